//! Watches the rules folder (and the plugins folder) and turns file changes into candidate
//! releases.
//!
//! Events are debounced (editors write a temp file and rename it over the original, `git pull`
//! touches many files), then one whole-tree candidate is built for the burst. Only events that
//! can change what the folder holds count: the watcher also reports every *open*, and reading the
//! folder opens every file, so treating opens as changes would make each read trigger the next.

use std::path::Path;
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

use crate::app::App;
use crate::release::source::is_ignored;
use crate::services::releases::Trigger;

/// Keeps the watcher alive; dropping it stops watching.
///
/// It watches from [`start`] on, but turns changes into reloads only from
/// [`Watcher::reload_changes`]: started before the start-up reads the folder and released once
/// the start-up's release serves, it loses no save made while the start-up builds, and no reload
/// races the start-up's.
pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    app: Arc<App>,
    /// Changes seen before [`Watcher::reload_changes`].
    held: Option<mpsc::UnboundedReceiver<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Watcher {
    /// From now on a change is a candidate release; changes seen since [`start`] give one
    /// reload now.
    pub fn reload_changes(&mut self) {
        if let Some(changes) = self.held.take() {
            self.task = Some(tokio::spawn(reload_on(self.app.clone(), changes)));
        }
    }
}

/// [`start`] when the office watches its folders (`watch`, on by default); a folder that cannot
/// be watched is logged, and reloads are then an admin's (`POST /admin/reload`).
pub fn start_if_configured(app: &Arc<App>) -> Option<Watcher> {
    if !app.config().watch {
        return None;
    }
    start(app.clone())
        .map_err(|e| {
            tracing::error!(
                "cannot watch {}: {e}; reload with POST /admin/reload",
                app.config().rules_dir.display()
            )
        })
        .ok()
}

/// Whether an event can change what the folder holds. Opens and reads (including the runtime's
/// own) cannot; a finished write, a create, remove, rename or data change can, and so can a
/// metadata change (a `chmod` can make an unreadable file readable; a `touch` that changes nothing
/// costs one read of the folder and is otherwise silent).
fn is_content_change(event: &notify::Event) -> bool {
    if event.need_rescan() {
        return true;
    }
    match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        // A backend that cannot say what happened: assume a change rather than miss one.
        EventKind::Any => true,
    }
}

/// Whether a change at `rel` (relative to the plugins folder) can change a release: a
/// connector's manifest or a component (`.wasm`), never build output under `target/` nor a
/// guest's sources.
fn is_plugin_change(rel: &Path) -> bool {
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
    let Some(first) = parts.next() else {
        return false;
    };
    if first == "target" || is_ignored(&first) {
        return false;
    }
    let rest: Vec<_> = parts.collect();
    if rest.iter().any(|p| p == "target" || is_ignored(p)) {
        return false;
    }
    match rest.last() {
        // A connector's folder itself (created, removed or renamed); names are `[a-z0-9-]+`,
        // so `README.md` or `Cargo.lock` beside them is not one.
        None => !first.contains('.'),
        Some(name) => name == crate::release::plugins::MANIFEST || name.ends_with(".wasm"),
    }
}

/// Watches the rules and plugins folders; see [`Watcher`].
pub fn start(app: Arc<App>) -> Result<Watcher, notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let rules_dir = app.config().rules_dir.clone();
    let plugins_dir = app.config().plugins_dir.clone();
    let plugins_root = std::fs::canonicalize(&plugins_dir).unwrap_or_else(|_| plugins_dir.clone());
    let counter = app.clone();
    let mut debouncer = new_debouncer(
        app.config().limits.reload_debounce(),
        None,
        move |result: DebounceEventResult| match result {
            Ok(events) => {
                let (changes, ignored): (Vec<_>, Vec<_>) =
                    events.iter().partition(|e| is_content_change(e));
                counter.metrics().rules_events(false, ignored.len());
                counter.metrics().rules_events(true, changes.len());
                let relevant = changes.iter().any(|e| {
                    e.paths.iter().any(|p| match p.strip_prefix(&plugins_root) {
                        Ok(rel) => is_plugin_change(rel),
                        Err(_) => !p
                            .file_name()
                            .is_some_and(|n| is_ignored(&n.to_string_lossy())),
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
    // A plugins folder made after the start is read by the next reload, not watched.
    if plugins_dir.is_dir() {
        match debouncer.watch(&plugins_dir, RecursiveMode::Recursive) {
            Ok(()) => tracing::info!("watching {} for connector changes", plugins_dir.display()),
            Err(e) => tracing::warn!(
                "cannot watch {}: {e}; reload connectors with POST /admin/reload",
                plugins_dir.display()
            ),
        }
    }
    Ok(Watcher {
        _debouncer: debouncer,
        app,
        held: Some(rx),
        task: None,
    })
}

/// Turns each burst of changes into one reload of the folder.
async fn reload_on(app: Arc<App>, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        // A burst of events needs one build of the final state.
        while rx.try_recv().is_ok() {}
        match app
            .releases()
            .reload_from_folder(Trigger::Watch, false)
            .await
        {
            Ok(o) if o.unchanged() => {}
            Ok(o) if o.accepted() => {
                tracing::info!("reloaded: now serving {}", o.release().unwrap_or_default())
            }
            Ok(o) => tracing::warn!(
                "change rejected; still serving {}",
                o.active().unwrap_or("nothing")
            ),
            Err(e) => tracing::error!("reload failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn only_manifests_and_components_of_plugins_matter() {
        for (path, matters) in [
            ("echo/connector.toml", true),
            ("echo/echo.wasm", true),
            ("echo", true),
            ("echo/src/lib.rs", false),
            ("echo/Cargo.toml", false),
            ("target/wasm32-unknown-unknown/release/echo.wasm", false),
            ("echo/target/echo.wasm", false),
            ("echo/.connector.toml.swp", false),
            ("README.md", false),
        ] {
            assert_eq!(is_plugin_change(Path::new(path)), matters, "{path}");
        }
    }

    #[test]
    fn opens_and_reads_are_not_changes() {
        let is = |kind| is_content_change(&notify::Event::new(kind));
        assert!(!is(EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is(EventKind::Access(AccessKind::Read)));
        assert!(!is(EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is(EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is(EventKind::Create(CreateKind::File)));
        assert!(is(EventKind::Remove(RemoveKind::File)));
        assert!(is(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(is(EventKind::Modify(ModifyKind::Name(RenameMode::Both))));
        assert!(is(EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
    }
}
