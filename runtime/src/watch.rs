//! Watches the rules folder and turns file changes into candidate releases.
//!
//! Events are debounced (editors write a temp file and rename it over the original, `git pull`
//! touches many files), then one whole-tree candidate is built for the burst.

use std::path::Path;
use std::sync::Arc;

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

use crate::app::App;
use crate::release::source::is_ignored;

/// Keeps the watcher alive; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn start(app: Arc<App>) -> Result<Watcher, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let rules_dir = app.config.rules_dir.clone();
    let mut debouncer = new_debouncer(
        app.config.limits.reload_debounce(),
        None,
        move |result: DebounceEventResult| match result {
            Ok(events) => {
                let relevant = events.iter().any(|e| {
                    e.paths.iter().any(|p| {
                        !p.file_name()
                            .is_some_and(|n| is_ignored(&n.to_string_lossy()))
                    })
                });
                if relevant {
                    let _ = tx.send(());
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!("watching rules: {e}");
                }
            }
        },
    )?;
    debouncer.watch(Path::new(&rules_dir), RecursiveMode::Recursive)?;
    tracing::info!("watching {} for changes", rules_dir.display());
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // A burst of events needs one build of the final state.
            while rx.try_recv().is_ok() {}
            match app.reload_from_folder("watch", false).await {
                Ok(o) if o.unchanged => {}
                Ok(o) if o.accepted => tracing::info!("reloaded: now serving {}", o.release),
                Ok(o) => tracing::warn!(
                    "change rejected; still serving {}",
                    o.active.as_deref().unwrap_or("nothing")
                ),
                Err(e) => tracing::error!("reload failed: {e}"),
            }
        }
    });
    Ok(Watcher {
        _debouncer: debouncer,
        task,
    })
}
