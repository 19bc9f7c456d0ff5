//! Watches the rules folder (and the plugins folder) and turns file changes into candidate
//! releases.
//!
//! Events are debounced (editors write a temp file and rename it over the original, `git pull`
//! touches many files), then one whole-tree candidate is built for the burst. Only events that
//! can change what the folder holds count: the watcher also reports every *open*, and reading the
//! folder opens every file, so treating opens as changes would make each read trigger the next.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::RecursiveMode;
use notify_debouncer_full::{
    new_debouncer, DebounceEventResult, DebouncedEvent, Debouncer, RecommendedCache,
};
use tokio::sync::mpsc;

use crate::app::App;
use crate::release::source::is_ignored;
use crate::services::releases::Trigger;

/// Keeps the watcher alive; dropping it stops watching.
///
/// It watches from [`start_if_configured`] on, noting each changed path for the next read of
/// the folder (which then looks at those paths only), but turns changes into reloads only from
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
        self.app.releases().folder_changes().not_watching();
    }
}

impl Watcher {
    /// From now on a change is a candidate release; changes seen since the watcher started
    /// give one reload now.
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

/// Where a changed path is, for the next read of the rules folder.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// In the rules folder: `/`-separated and relative to it, empty for the folder itself.
    Rules(String),
    /// A path no read takes: an editor's leftover, anything in a hidden folder, or a path
    /// in the plugins folder (read whole by every reload).
    Untaken,
    /// A path the read cannot name (not UTF-8, or not under either folder): only a whole read
    /// can tell what changed.
    Unknown,
}

/// Where `path` is, given the rules folder's and the plugins folder's absolute paths.
fn place(rules: &[PathBuf], plugins: &[PathBuf], path: &Path) -> Place {
    let Some(rel) = rules.iter().find_map(|root| path.strip_prefix(root).ok()) else {
        return if plugins.iter().any(|root| path.starts_with(root)) {
            Place::Untaken
        } else {
            Place::Unknown
        };
    };
    let mut parts = Vec::new();
    for part in rel.components() {
        let Some(name) = part
            .as_os_str()
            .to_str()
            .filter(|_| matches!(part, Component::Normal(_)))
        else {
            return Place::Unknown;
        };
        if is_ignored(name) {
            return Place::Untaken;
        }
        parts.push(name);
    }
    Place::Rules(parts.join("/"))
}

/// Notes each changed path of the rules folder for the next read.
fn note_changes(app: &App, rules: &[PathBuf], plugins: &[PathBuf], changes: &[&DebouncedEvent]) {
    let mut noted = app.releases().folder_changes();
    for event in changes {
        if event.need_rescan() {
            noted.everything_changed();
        }
        for path in &event.paths {
            match place(rules, plugins, path) {
                Place::Rules(rel) => noted.changed(rel),
                Place::Untaken => {}
                Place::Unknown => noted.everything_changed(),
            }
        }
    }
}

/// Watches the rules and plugins folders; see [`Watcher`].
fn start(app: Arc<App>) -> Result<Watcher, notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let rules_dir = app.config().rules_dir.clone();
    let plugins_dir = app.config().plugins_dir.clone();
    let plugins_root = std::fs::canonicalize(&plugins_dir).unwrap_or_else(|_| plugins_dir.clone());
    // Events name paths under a folder as it was given to the watcher, made absolute.
    let roots = |dir: &Path| -> Vec<PathBuf> {
        [std::path::absolute(dir), std::fs::canonicalize(dir)]
            .into_iter()
            .flatten()
            .collect()
    };
    let rules_roots = roots(&rules_dir);
    let plugins_roots = roots(&plugins_dir);
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
                note_changes(&counter, &rules_roots, &plugins_roots, &changes);
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
                // What the lost events named is unknown: the next read looks at everything.
                counter.releases().folder_changes().everything_changed();
            }
        },
    )?;
    // Before the folder is watched: a change from here on is noted.
    let noted = || app.releases().folder_changes();
    noted().watching_from_now();
    if let Err(e) = debouncer.watch(Path::new(&rules_dir), RecursiveMode::Recursive) {
        noted().not_watching();
        return Err(e);
    }
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
    use std::os::unix::ffi::OsStrExt;

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
    fn changed_paths_are_told_relative_to_the_rules_folder() {
        let rules = [
            PathBuf::from("/srv/pintu/./rules"),
            PathBuf::from("/data/rules"),
        ];
        let plugins = [PathBuf::from("/srv/pintu/plugins")];
        let at = |path: &str| place(&rules, &plugins, Path::new(path));
        assert_eq!(
            at("/srv/pintu/rules/pbg/levy.rhai"),
            Place::Rules("pbg/levy.rhai".into())
        );
        assert_eq!(at("/data/rules/pbg"), Place::Rules("pbg".into()));
        assert_eq!(at("/srv/pintu/rules"), Place::Rules(String::new()));
        assert_eq!(at("/srv/pintu/rules/pbg/.levy.rhai.swp"), Place::Untaken);
        assert_eq!(at("/srv/pintu/rules/.git/index"), Place::Untaken);
        assert_eq!(at("/srv/pintu/plugins/oss/oss.wasm"), Place::Untaken);
        assert_eq!(at("/elsewhere/levy.rhai"), Place::Unknown);
        let not_utf8 = Path::new(std::ffi::OsStr::from_bytes(b"/data/rules/p\xff/a.toml"));
        assert_eq!(place(&rules, &plugins, not_utf8), Place::Unknown);
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
