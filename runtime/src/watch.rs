//! Watches the rules folder (and the plugins folder) and turns file changes into candidate
//! releases.
//!
//! Changes come in bursts (an editor writes a temp file and renames it over the original,
//! `git pull` touches many files): a burst lasts from its first change until the folder has been
//! quiet for `reload_debounce_ms`, and then one candidate is built for it. The quiet period is
//! measured from the *last* change, so a burst is never cut at a clock tick between two events
//! of one save, and a save goes live one quiet period after its last event. Only events that can
//! change what the folder holds count: the watcher also reports every *open*, and reading the
//! folder opens every file, so treating opens as changes would make each read trigger the next.

use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{Event, RecursiveMode, Watcher as _};
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
    /// Dropping it ends the event stream, and with it the thread that groups events into bursts.
    _watcher: notify::RecommendedWatcher,
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

/// What a burst's changes tell the next read of the rules folder, and whether they can change a
/// release at all.
#[derive(Debug, Default, PartialEq, Eq)]
struct Noted {
    /// Changed paths of the rules folder, relative to it.
    paths: Vec<String>,
    /// Only a whole read can tell what changed.
    everything: bool,
    /// Some change can change a release: a path a read takes, or a connector's manifest or
    /// component. Writes no read takes (a `.git` folder's, an editor's leftovers, a guest's
    /// build output) start no reload.
    relevant: bool,
}

/// Looks at each path of a burst's changes once, given the rules folder's and the plugins
/// folder's absolute paths.
fn classify(rules: &[PathBuf], plugins: &[PathBuf], changes: &[Event]) -> Noted {
    let mut noted = Noted::default();
    for event in changes {
        if event.need_rescan() {
            noted.everything = true;
            noted.relevant = true;
        }
        for path in &event.paths {
            let placed = place(rules, plugins, path);
            noted.relevant |= match plugins.iter().find_map(|root| path.strip_prefix(root).ok()) {
                Some(rel) => is_plugin_change(rel),
                None => placed != Place::Untaken,
            };
            match placed {
                Place::Rules(rel) => noted.paths.push(rel),
                Place::Untaken => {}
                Place::Unknown => noted.everything = true,
            }
        }
    }
    noted
}

/// The longest a burst may grow: a folder that never goes quiet (a process writing into it every
/// few milliseconds) is still read, at the latest this long after the burst's first change.
fn burst_cap(quiet: Duration) -> Duration {
    (quiet * 20).max(Duration::from_secs(1))
}

/// One burst: the content changes, and the errors of the watcher itself (events may have been
/// lost, so only a whole read can tell what changed).
#[derive(Debug, Default)]
struct Burst {
    changes: Vec<Event>,
    errors: Vec<notify::Error>,
}

/// Waits for the next burst: from the first change (or error) until nothing more has come for
/// `quiet`, or `cap` after the first. Events that cannot change what the folder holds are
/// counted through `ignored` as they come and neither start nor extend a burst. `None` once the
/// watcher is gone and everything it sent has been taken.
fn next_burst(
    events: &Receiver<notify::Result<Event>>,
    quiet: Duration,
    cap: Duration,
    ignored: &mut dyn FnMut(usize),
) -> Option<Burst> {
    let mut burst = Burst::default();
    let mut add = |burst: &mut Burst, event: notify::Result<Event>| match event {
        Ok(e) if is_content_change(&e) => {
            burst.changes.push(e);
            true
        }
        Ok(_) => {
            ignored(1);
            false
        }
        Err(e) => {
            burst.errors.push(e);
            true
        }
    };
    // Until the first change, wait as long as it takes.
    loop {
        if add(&mut burst, events.recv().ok()?) {
            break;
        }
    }
    let first = Instant::now();
    let mut last = first;
    loop {
        let deadline = (last + quiet).min(first + cap);
        let wait = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(wait) {
            Ok(event) => {
                if add(&mut burst, event) {
                    last = Instant::now();
                }
            }
            // Quiet long enough, or the watcher is gone: this burst is whole either way.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return Some(burst),
        }
        if Instant::now() >= first + cap {
            return Some(burst);
        }
    }
}

/// Watches the rules and plugins folders; see [`Watcher`].
fn start(app: Arc<App>) -> Result<Watcher, notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let rules_dir = app.config().rules_dir.clone();
    let plugins_dir = app.config().plugins_dir.clone();
    // Events name paths under a folder as it was given to the watcher, made absolute.
    let roots = |dir: &Path| -> Vec<PathBuf> {
        [std::path::absolute(dir), std::fs::canonicalize(dir)]
            .into_iter()
            .flatten()
            .collect()
    };
    let rules_roots = roots(&rules_dir);
    let plugins_roots = roots(&plugins_dir);
    let quiet = app.config().limits.reload_debounce();
    let counter = app.clone();
    let handle = move |burst: Burst| {
        counter.metrics().rules_events(true, burst.changes.len());
        for e in &burst.errors {
            tracing::warn!("watching rules: {e}");
        }
        let noted = classify(&rules_roots, &plugins_roots, &burst.changes);
        // The watcher's errors may stand for lost events.
        let lost = !burst.errors.is_empty();
        {
            let mut folder = counter.releases().folder_changes();
            // What lost events named is unknown: the next read looks at everything.
            if noted.everything || lost {
                folder.everything_changed();
            }
            for rel in noted.paths {
                folder.changed(rel);
            }
        }
        if noted.relevant || lost {
            let _ = tx.send(());
        }
    };
    let (events_tx, events) = std::sync::mpsc::channel();
    let counter = app.clone();
    std::thread::Builder::new()
        .name("pintu-watch".into())
        .spawn(move || {
            let mut ignored = |n| counter.metrics().rules_events(false, n);
            while let Some(burst) = next_burst(&events, quiet, burst_cap(quiet), &mut ignored) {
                handle(burst);
            }
        })
        .map_err(notify::Error::io)?;
    let mut watcher = notify::recommended_watcher(events_tx)?;
    // Before the folder is watched: a change from here on is noted.
    let noted = || app.releases().folder_changes();
    noted().watching_from_now();
    if let Err(e) = watcher.watch(Path::new(&rules_dir), RecursiveMode::Recursive) {
        noted().not_watching();
        return Err(e);
    }
    tracing::info!("watching {} for changes", rules_dir.display());
    // A plugins folder made after the start is read by the next reload, not watched.
    if plugins_dir.is_dir() {
        match watcher.watch(&plugins_dir, RecursiveMode::Recursive) {
            Ok(()) => tracing::info!("watching {} for connector changes", plugins_dir.display()),
            Err(e) => tracing::warn!(
                "cannot watch {}: {e}; reload connectors with POST /admin/reload",
                plugins_dir.display()
            ),
        }
    }
    Ok(Watcher {
        _watcher: watcher,
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

    fn change(path: &str) -> notify::Result<Event> {
        Ok(Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any))).add_path(path.into()))
    }

    fn open(path: &str) -> notify::Result<Event> {
        Ok(Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any))).add_path(path.into()))
    }

    fn paths(burst: &Burst) -> Vec<String> {
        let paths = burst.changes.iter().flat_map(|e| &e.paths);
        paths.map(|p| p.display().to_string()).collect()
    }

    #[test]
    fn the_events_of_a_save_are_one_burst_and_opens_only_count() {
        let (tx, rx) = std::sync::mpsc::channel();
        // An editor's save as the watcher sees it, after our own read opened a file.
        let rename = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/r/p/permit.tmp".into())
            .add_path("/r/p/permit.toml".into());
        for event in [
            open("/r/p/levy.rhai"),
            Ok(Event::new(EventKind::Create(CreateKind::File)).add_path("/r/p/permit.tmp".into())),
            change("/r/p/permit.tmp"),
            open("/r/p/permit.tmp"),
            Ok(rename),
        ] {
            tx.send(event).unwrap();
        }
        drop(tx);
        let mut ignored = 0;
        // A quiet period far longer than a test could wait: only the end of the stream ends it.
        let quiet = Duration::from_secs(3600);
        let burst = next_burst(&rx, quiet, quiet, &mut |n| ignored += n).unwrap();
        assert_eq!(
            paths(&burst),
            [
                "/r/p/permit.tmp",
                "/r/p/permit.tmp",
                "/r/p/permit.tmp",
                "/r/p/permit.toml"
            ]
        );
        assert_eq!(ignored, 2);
        assert!(next_burst(&rx, quiet, quiet, &mut |_| {}).is_none());
    }

    #[test]
    fn a_burst_ends_when_the_folder_is_quiet_and_the_next_change_starts_another() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut ignored = 0;
        tx.send(change("/r/a")).unwrap();
        // The sender stays: only the quiet period can end this burst.
        let burst = next_burst(&rx, Duration::ZERO, Duration::from_secs(3600), &mut |n| {
            ignored += n
        });
        assert_eq!(paths(&burst.unwrap()), ["/r/a"]);
        tx.send(open("/r/a")).unwrap();
        tx.send(change("/r/b")).unwrap();
        let burst = next_burst(
            &rx,
            Duration::from_millis(1),
            Duration::from_secs(3600),
            &mut |n| ignored += n,
        );
        assert_eq!(paths(&burst.unwrap()), ["/r/b"]);
        assert_eq!(ignored, 1);
    }

    #[test]
    fn a_folder_that_never_goes_quiet_is_still_read() {
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let done = done.clone();
            std::thread::spawn(move || {
                // Far more changes than the cap lets a burst wait for, each far inside the
                // quiet period: only the cap can end the burst before this loop does.
                for i in 0..200_000 {
                    if tx.send(change(&format!("/r/log-{i}"))).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let quiet = Duration::from_secs(3600);
        let burst = next_burst(&rx, quiet, Duration::from_millis(100), &mut |_| {}).unwrap();
        assert!(
            !done.load(std::sync::atomic::Ordering::SeqCst),
            "the burst ended only when the changes did"
        );
        assert!(!burst.changes.is_empty());
        drop(rx);
        writer.join().unwrap();
    }

    #[test]
    fn an_error_of_the_watcher_is_a_burst() {
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(Err(notify::Error::generic("queue overflow")))
            .unwrap();
        drop(tx);
        let burst = next_burst(&rx, Duration::ZERO, Duration::ZERO, &mut |_| {}).unwrap();
        assert_eq!((burst.changes.len(), burst.errors.len()), (0, 1));
    }

    #[test]
    fn the_cap_grows_with_a_long_quiet_period() {
        assert_eq!(burst_cap(Duration::from_millis(20)), Duration::from_secs(1));
        assert_eq!(burst_cap(Duration::from_secs(1)), Duration::from_secs(20));
    }

    #[test]
    fn only_changes_a_read_takes_start_a_reload_and_each_path_is_noted_once() {
        let rules = [PathBuf::from("/srv/rules")];
        let plugins = [PathBuf::from("/srv/plugins")];
        let burst = |paths: &[&str]| {
            let event = Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any)));
            let event = paths.iter().fold(event, |e, p| e.add_path(p.into()));
            classify(&rules, &plugins, &[event])
        };
        let noted = |paths: &[&str], everything, relevant| Noted {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            everything,
            relevant,
        };
        // A `git commit` or `git fetch` in the rules folder writes only under `.git`.
        assert_eq!(
            burst(&["/srv/rules/.git/index", "/srv/rules/.git/objects/ab/cdef"]),
            noted(&[], false, false)
        );
        assert_eq!(
            burst(&["/srv/rules/pbg/.levy.rhai.swp"]),
            noted(&[], false, false)
        );
        assert_eq!(
            burst(&["/srv/rules/pbg/permit.tmp", "/srv/rules/pbg/permit.toml"]),
            noted(&["pbg/permit.toml"], false, true)
        );
        assert_eq!(
            burst(&["/srv/plugins/echo/echo.wasm"]),
            noted(&[], false, true)
        );
        assert_eq!(
            burst(&["/srv/plugins/echo/src/lib.rs"]),
            noted(&[], false, false)
        );
        assert_eq!(burst(&["/elsewhere/x"]), noted(&[], true, true));
        let rescan = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert_eq!(
            classify(&rules, &plugins, &[rescan]),
            noted(&[], true, true)
        );
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
