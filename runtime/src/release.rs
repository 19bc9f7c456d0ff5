//! A release is the whole rules tree, identified by its content hash, compiled and tested as one.
//! Candidates that fail anything are never served.

mod calendar;
pub mod changes;
mod conditions;
mod imports;
pub mod plugins;
pub mod source;

pub use conditions::TestConditions;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use imports::Imports;

use crate::auth::Roles;
use crate::config::Limits;
use crate::connectors::{Connector, ConnectorHost};
use crate::diagnostic::Diagnostic;
use crate::domain::calendar::Calendar;
use crate::permits::{fixtures, Permit, PermitFiles};
use crate::scripts::ScriptHost;
pub use plugins::PluginFiles;
pub use source::SourceTree;

/// Folder of shared Rhai modules inside the rules tree.
pub const LIB_DIR: &str = "lib";
/// The office's working-day calendar, at the top of the rules tree.
pub const CALENDAR_FILE: &str = "calendar.toml";

/// A built, fully tested release.
pub struct Release {
    pub id: String,
    pub sources: SourceTree,
    pub host: ScriptHost,
    /// Shared with the releases that reuse a permit unchanged (see [`build_on`]).
    pub permits: BTreeMap<String, Arc<Permit>>,
    /// Loaded and type-checked connectors by name; shared (the `Connector` is a handle) with
    /// the releases that reuse them unchanged.
    pub connectors: BTreeMap<String, Connector>,
    pub report: BuildReport,
    /// The limits it was built and tested under; a permit is reused only under the same ones.
    limits: Limits,
    /// The office roles its flows were checked against; likewise.
    roles: Roles,
    calendar: Calendar,
    /// The office's `[config]` overrides the connectors were loaded with; likewise.
    connector_overrides: BTreeMap<String, toml::Table>,
}

impl Release {
    /// The working-day calendar (`calendar.toml`; the default calendar when there is none).
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }
}

/// What building a candidate found; kept for accepted and rejected candidates alike.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub release: String,
    pub permits: usize,
    /// Every fixture of the release that passes, whether it ran in this build or was reused.
    pub fixtures_passed: usize,
    pub fixtures_failed: usize,
    /// Of `fixtures_passed`, those not run again: their permit was reused unchanged.
    pub fixtures_reused: usize,
    /// No fixture ran: this very release passed them all before under the same test conditions
    /// (a restart), so `fixtures_passed` are those, all counted as reused.
    pub passed_before: bool,
    /// Permit types loaded, compiled and tested in this build.
    pub permits_rebuilt: usize,
    /// Permit types taken from the active release: their folder and every library module they
    /// import (directly or through another module) are unchanged.
    pub permits_reused: usize,
    pub diagnostics: Vec<Diagnostic>,
    /// Worth fixing but not a reason to reject (a permit type without fixtures).
    pub warnings: Vec<Diagnostic>,
    pub duration: Duration,
    /// Connectors of the release, loaded now or reused.
    pub connectors: usize,
    /// Of `connectors`, those taken from the active release: same manifest, component and
    /// office overrides, so not compiled or checked again.
    pub connectors_reused: usize,
}

/// The JSON form of a [`BuildReport`] (the admin answers and the reload log); the OpenAPI
/// document describes this very struct, so the two cannot drift apart.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BuildReport)]
pub(crate) struct ShownReport<'a> {
    release: &'a str,
    permits: usize,
    fixtures_passed: usize,
    fixtures_failed: usize,
    /// Of `fixtures_passed`, those not run again: their permit type was reused unchanged, or
    /// the whole release passed them before (`passed_before`).
    fixtures_reused: usize,
    /// No fixture ran: this release passed them all before under the same engine and settings
    /// (a start-up with nothing serving yet).
    passed_before: bool,
    permits_rebuilt: usize,
    permits_reused: usize,
    /// Every problem; any one rejects the candidate.
    diagnostics: &'a [Diagnostic],
    /// Worth fixing but not a reason to reject.
    warnings: &'a [Diagnostic],
    /// Milliseconds (the older name of `duration_ms`), kept for clients that read it.
    duration: u64,
    duration_ms: u64,
    /// Connectors of the release (loaded now or reused).
    connectors: usize,
    /// Of `connectors`, those reused unchanged from the active release.
    connectors_reused: usize,
}

impl Serialize for BuildReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        ShownReport {
            release: &self.release,
            permits: self.permits,
            fixtures_passed: self.fixtures_passed,
            fixtures_failed: self.fixtures_failed,
            fixtures_reused: self.fixtures_reused,
            passed_before: self.passed_before,
            permits_rebuilt: self.permits_rebuilt,
            permits_reused: self.permits_reused,
            diagnostics: &self.diagnostics,
            warnings: &self.warnings,
            duration: ms,
            duration_ms: ms,
            connectors: self.connectors,
            connectors_reused: self.connectors_reused,
        }
        .serialize(s)
    }
}

impl BuildReport {
    pub fn ok(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// One line for logs and the end of `pintu check`; what was reused is said only when
    /// something was.
    pub fn summary(&self) -> String {
        let reuse = if self.passed_before {
            format!(
                "; its {} fixtures passed before under the same engine and settings, not run again",
                self.fixtures_reused
            )
        } else if self.permits_reused == 0 {
            String::new()
        } else {
            format!(
                "; {} permit types rebuilt, {} reused with their {} fixtures",
                self.permits_rebuilt, self.permits_reused, self.fixtures_reused
            )
        };
        let connectors = match (self.connectors, self.connectors_reused) {
            (0, _) => String::new(),
            (n, 0) => format!(", {n} connectors"),
            (n, r) => format!(", {n} connectors ({r} reused)"),
        };
        format!(
            "release {}: {} permit types{connectors}, {} fixtures passed, {} failed, {} problems, {} warnings ({} ms{reuse})",
            self.release,
            self.permits,
            self.fixtures_passed,
            self.fixtures_failed,
            self.diagnostics.len(),
            self.warnings.len(),
            self.duration.as_millis(),
        )
    }
}

/// Builds a candidate from `tree` from scratch: parse, compile, load every permit, run every
/// fixture.
pub fn build(tree: SourceTree, limits: &Limits) -> Result<Release, BuildReport> {
    build_on(tree, limits, None)
}

/// What loading a release's connectors needs: the process's connector host, started on first
/// use (an office without connectors never starts an engine), and the office's
/// `[connectors.config.<name>]` overrides.
#[derive(Clone, Default)]
pub struct ConnectorSetup {
    cache_dir: Option<std::path::PathBuf>,
    host: Arc<std::sync::OnceLock<Result<Arc<ConnectorHost>, String>>>,
    pub overrides: BTreeMap<String, toml::Table>,
}

impl ConnectorSetup {
    /// `cache_dir`: where compiled components are kept (`DATA/connector-cache`).
    pub fn new(
        cache_dir: Option<std::path::PathBuf>,
        overrides: BTreeMap<String, toml::Table>,
    ) -> Self {
        Self {
            cache_dir,
            host: Arc::default(),
            overrides,
        }
    }

    /// The connector host, started now if it was not yet.
    pub fn host(&self) -> Result<Arc<ConnectorHost>, String> {
        self.host
            .get_or_init(|| {
                ConnectorHost::new(self.cache_dir.clone()).map_err(|e| format!("{e:#}"))
            })
            .clone()
    }
}

/// [`build_for`] an office with the default roles.
pub fn build_on(
    tree: SourceTree,
    limits: &Limits,
    base: Option<&Release>,
) -> Result<Release, BuildReport> {
    build_for(tree, limits, &Roles::default(), base)
}

/// What one permit folder came to in a build.
struct PermitOutcome {
    permit: Option<Arc<Permit>>,
    reused: bool,
    load_problems: Vec<Diagnostic>,
    fixture_problems: Vec<Diagnostic>,
    passed: usize,
}

/// Builds a candidate from `tree`, reusing from `base` (the active release) every permit whose
/// folder and whose imported library modules are the same in both trees: it was compiled and
/// passed its fixtures with exactly these inputs, so it is taken as it is. Everything else is
/// loaded, compiled and tested now, folders in parallel. The candidate is still one whole
/// release, accepted or rejected as one. Flows may name only the office's `roles`.
pub fn build_for(
    tree: SourceTree,
    limits: &Limits,
    roles: &Roles,
    base: Option<&Release>,
) -> Result<Release, BuildReport> {
    build_with(tree, limits, roles, base, &ConnectorSetup::default())
}

/// [`build_for`] with connectors: every connector of the tree is loaded by `setup`'s host
/// (manifest, sha256, compilation, WIT type-check, `describe`), except those unchanged since
/// `base` (same files, same overrides), which are taken from it. A connector that fails to load
/// rejects the candidate with its located diagnostics, like a failing fixture.
pub fn build_with(
    tree: SourceTree,
    limits: &Limits,
    roles: &Roles,
    base: Option<&Release>,
    setup: &ConnectorSetup,
) -> Result<Release, BuildReport> {
    build_inner(tree, limits, roles, base, setup, true)
}

/// Builds a release that already passed every fixture under the same [`TestConditions`] (its
/// [`crate::store::records::PassRecord`]): a restart, or the start-up's fallback to the stored
/// release.
/// Every file is still loaded and compiled, and every fixture counted, so a release that would
/// not load is still refused; the fixtures do not run again, as the same files, engine and
/// settings give the same results.
pub fn build_passed(
    tree: SourceTree,
    limits: &Limits,
    roles: &Roles,
    setup: &ConnectorSetup,
) -> Result<Release, BuildReport> {
    build_inner(tree, limits, roles, None, setup, false)
}

fn build_inner(
    tree: SourceTree,
    limits: &Limits,
    roles: &Roles,
    base: Option<&Release>,
    setup: &ConnectorSetup,
    run_fixtures: bool,
) -> Result<Release, BuildReport> {
    let started = Instant::now();
    let (connectors, mut connector_problems, connectors_reused) =
        load_connectors(&tree, base, setup);
    let mut report = BuildReport {
        release: tree.id().to_owned(),
        ..BuildReport::default()
    };

    let (libs, folders, mut layout) = split(&tree);
    report.diagnostics.append(&mut layout);
    let base = base.filter(|b| b.limits == *limits && b.roles == *roles);
    let calendar = match tree.files().get(CALENDAR_FILE) {
        Some(text) => calendar::parse(CALENDAR_FILE, text).unwrap_or_else(|mut problems| {
            report.diagnostics.append(&mut problems);
            Calendar::default()
        }),
        None => Calendar::default(),
    };
    // Library modules whose text differs from the base (added and removed ones included): a
    // permit importing one of them, even through another module, is built again.
    let changed_libs: BTreeSet<&str> = match base {
        Some(b) => {
            let old: BTreeMap<&str, &str> = folder_files(&b.sources, LIB_DIR)
                .filter_map(|(rest, text)| Some((lib_name(rest)?, text)))
                .collect();
            libs.keys()
                .map(String::as_str)
                .chain(old.keys().copied())
                .filter(|name| libs.get(*name).map(|l| l.1.as_str()) != old.get(name).copied())
                .collect()
        }
        None => BTreeSet::new(),
    };
    let lib_imports: BTreeMap<&str, Imports> = libs
        .iter()
        .map(|(name, (_, text))| (name.as_str(), imports::of(text)))
        .collect();

    let host = ScriptHost::new(limits, libs.clone());
    report.diagnostics.extend(host.check_libs());

    let entries: Vec<(&str, &PermitFiles<'_>)> = folders.iter().map(|(k, v)| (*k, v)).collect();
    let outcomes: Vec<PermitOutcome> = entries
        .par_iter()
        .map(|(id, files)| {
            let reusable = base.and_then(|b| {
                let same_folder = same_files(files, folder_files(&b.sources, id));
                let same_libs = || {
                    changed_libs.is_empty()
                        || imports::closure(files, &lib_imports).is_some_and(|used| {
                            !used.iter().any(|m| changed_libs.contains(m.as_str()))
                        })
                };
                (same_folder && same_libs())
                    .then(|| b.permits.get(*id).cloned())
                    .flatten()
            });
            match reusable {
                Some(permit) => PermitOutcome {
                    passed: permit.fixture_count,
                    permit: Some(permit),
                    reused: true,
                    load_problems: Vec::new(),
                    fixture_problems: Vec::new(),
                },
                None => build_permit(id, files, &host, roles, run_fixtures),
            }
        })
        .collect();

    let mut permits = BTreeMap::new();
    let mut fixture_problems = Vec::new();
    for outcome in outcomes {
        report.diagnostics.extend(outcome.load_problems);
        report.fixtures_failed += outcome.fixture_problems.len();
        fixture_problems.extend(outcome.fixture_problems);
        report.fixtures_passed += outcome.passed;
        let Some(permit) = outcome.permit else {
            continue;
        };
        if outcome.reused {
            report.permits_reused += 1;
            report.fixtures_reused += outcome.passed;
        } else {
            report.permits_rebuilt += 1;
            if !run_fixtures {
                report.fixtures_reused += outcome.passed;
            }
        }
        if permit.fixture_count == 0 {
            report.warnings.push(Diagnostic::file(
                format!("{}/permit.toml", permit.id),
                format!(
                    "permit type `{}` has no fixtures: add one to `{}/tests/` so every change to it is tested",
                    permit.id, permit.id
                ),
            ));
        }
        permits.insert(permit.id.clone(), permit);
    }
    // Problems loading a permit come before fixture failures, as when they ran in two passes.
    report.diagnostics.append(&mut fixture_problems);
    report.permits = permits.len();
    if permits.is_empty() && report.diagnostics.is_empty() {
        report.diagnostics.push(Diagnostic::file(
            ".",
            "the rules folder defines no permit type",
        ));
    }
    report.diagnostics.append(&mut connector_problems);
    report.connectors = connectors.len();
    report.connectors_reused = connectors_reused;
    report.passed_before = !run_fixtures;
    report.duration = started.elapsed();
    if !report.ok() {
        return Err(report);
    }
    Ok(Release {
        id: tree.id().to_owned(),
        sources: tree,
        host,
        permits,
        connectors,
        report,
        limits: limits.clone(),
        roles: roles.clone(),
        calendar,
        connector_overrides: setup.overrides.clone(),
    })
}

/// A connector loaded (and whether it was reused), or its problems.
type Loaded = Result<(Connector, bool), Vec<Diagnostic>>;

/// Loads every connector of `tree` (folders in parallel), taking from `base` those whose files
/// and overrides are unchanged; returns them, the problems of those that failed (in folder
/// order) and how many were reused.
fn load_connectors(
    tree: &SourceTree,
    base: Option<&Release>,
    setup: &ConnectorSetup,
) -> (BTreeMap<String, Connector>, Vec<Diagnostic>, usize) {
    let wanted = tree.plugins().connectors();
    if wanted.is_empty() {
        return (BTreeMap::new(), Vec::new(), 0);
    }
    let reusable = |name: &str, files: &BTreeMap<String, Vec<u8>>| {
        let base = base?;
        let same = base.sources.plugins().connectors().get(name) == Some(files)
            && base.connector_overrides.get(name) == setup.overrides.get(name);
        same.then(|| base.connectors.get(name).cloned()).flatten()
    };
    let entries: Vec<(&String, &BTreeMap<String, Vec<u8>>)> = wanted.iter().collect();
    let outcomes: Vec<(String, Loaded)> = entries
        .par_iter()
        .map(|(name, files)| {
            let outcome = match reusable(name, files) {
                Some(c) => Ok((c, true)),
                None => match setup.host() {
                    Ok(host) => host
                        .load(name, files, setup.overrides.get(name.as_str()))
                        .map(|c| (c, false)),
                    Err(e) => Err(vec![Diagnostic::file(
                        format!("plugins/{name}/{}", plugins::MANIFEST),
                        format!("connectors cannot be loaded on this machine: {e}"),
                    )]),
                },
            };
            ((*name).clone(), outcome)
        })
        .collect();
    let mut loaded = BTreeMap::new();
    let mut problems = Vec::new();
    let mut reused = 0;
    for (name, outcome) in outcomes {
        match outcome {
            Ok((connector, was_reused)) => {
                reused += usize::from(was_reused);
                loaded.insert(name, connector);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    (loaded, problems, reused)
}

/// Module name → (file, source) of `lib/`.
type Libs = BTreeMap<String, (String, String)>;

/// Splits a tree into its library modules and its permit folders; misplaced files in `lib/`
/// are problems.
fn split(tree: &SourceTree) -> (Libs, BTreeMap<&str, PermitFiles<'_>>, Vec<Diagnostic>) {
    let mut libs = BTreeMap::new();
    let mut folders: BTreeMap<&str, PermitFiles<'_>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, text) in tree.files() {
        let Some((top, rest)) = path.split_once('/') else {
            // Top-level files: `calendar.toml`, read by the build, and documentation.
            continue;
        };
        if top == LIB_DIR {
            match lib_name(rest) {
                Some(name) => {
                    libs.insert(name.to_owned(), (path.clone(), text.to_string()));
                }
                None if rest.ends_with(".md") => {}
                None => problems.push(Diagnostic::file(
                    path,
                    "lib/ holds only `<name>.rhai` modules",
                )),
            }
            continue;
        }
        folders.entry(top).or_default().insert(rest, &**text);
    }
    (libs, folders, problems)
}

/// The module name of a file of `lib/` (its path within `lib/`), if it is one.
fn lib_name(rest: &str) -> Option<&str> {
    rest.strip_suffix(".rhai").filter(|n| !n.contains('/'))
}

/// The files under the top-level `folder` of `tree`, `(path within it, text)` in path order,
/// found without grouping the whole tree: the serving release is looked up folder by folder.
fn folder_files<'a>(
    tree: &'a SourceTree,
    folder: &str,
) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
    let inside = format!("{folder}/");
    tree.files()
        .range::<str, _>((Bound::Included(inside.as_str()), Bound::Unbounded))
        .map_while(move |(path, text)| Some((path.strip_prefix(inside.as_str())?, &**text)))
}

/// Whether a permit folder holds the same files as `other` lists. A text read again from an
/// unchanged file is the very text the base release holds, so most comparisons end at its
/// address; comparing a big office's every text byte by byte was a tenth of a save's work.
fn same_files<'a>(
    files: &PermitFiles<'_>,
    mut other: impl Iterator<Item = (&'a str, &'a str)>,
) -> bool {
    files.iter().all(|(path, text)| {
        other
            .next()
            .is_some_and(|(p, t)| *path == p && (std::ptr::eq(*text, t) || *text == t))
    }) && other.next().is_none()
}

/// Loads, compiles and tests one permit folder; its fixtures run in parallel, their problems
/// kept in the fixtures' order. Without `run_fixtures` they are only counted.
fn build_permit(
    id: &str,
    files: &PermitFiles<'_>,
    host: &ScriptHost,
    roles: &Roles,
    run_fixtures: bool,
) -> PermitOutcome {
    let mut outcome = PermitOutcome {
        permit: None,
        reused: false,
        load_problems: Vec::new(),
        fixture_problems: Vec::new(),
        passed: 0,
    };
    if !valid_id(id) {
        outcome.load_problems.push(Diagnostic::file(
            format!("{id}/"),
            format!("permit id `{id}` must be lowercase letters, digits, `-` or `_`"),
        ));
        return outcome;
    }
    let loaded = Permit::load(id, files, host, roles);
    if !run_fixtures {
        // Counted by the load, which still checks their names; they parsed when they passed.
        match loaded {
            Ok(permit) => {
                outcome.passed = permit.fixture_count;
                outcome.permit = Some(Arc::new(permit));
            }
            Err(d) => outcome.load_problems = d,
        }
        return outcome;
    }
    // A fixture that does not parse is a problem loading the permit type, reported with the
    // others even when something else already fails.
    let (parsed, mut unparsed) = fixtures::parse_all(id, files);
    let permit = match loaded {
        Ok(p) if unparsed.is_empty() => p,
        Ok(_) => {
            outcome.load_problems = unparsed;
            return outcome;
        }
        Err(mut d) => {
            d.append(&mut unparsed);
            outcome.load_problems = d;
            return outcome;
        }
    };
    let results: Vec<Result<(), Diagnostic>> = parsed
        .par_iter()
        .map(|(file, fixture)| fixtures::run(&permit, host, file, fixture))
        .collect();
    for result in results {
        match result {
            Ok(()) => outcome.passed += 1,
            Err(d) => outcome.fixture_problems.push(d),
        }
    }
    outcome.permit = Some(Arc::new(permit));
    outcome
}

pub(crate) fn valid_id(id: &str) -> bool {
    id.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> SourceTree {
        SourceTree::from_files(
            files
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect(),
        )
    }

    const PERMIT: &str = "name = \"Uji\"\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\n[params]\nrate = 0.1\n";
    const LEVY: &str = "fn levy(data, params) {\n  #{ items: [#{ code: \"a\", label: \"A\", amount: data.x * params.rate }] }\n}\n";
    const FIXTURE: &str = r#"{"data": {"x": "10"}, "expect": {"total": "1"}}"#;

    #[test]
    fn a_good_tree_builds_and_runs_its_fixtures() {
        let r = build(
            tree(&[
                ("uji/permit.toml", PERMIT),
                ("uji/levy.rhai", LEVY),
                ("uji/tests/a.json", FIXTURE),
            ]),
            &Limits::default(),
        )
        .map_err(|r| r.diagnostics)
        .unwrap();
        assert_eq!(r.report.fixtures_passed, 1);
        assert_eq!(r.permits.len(), 1);
    }

    #[test]
    fn a_release_that_passed_before_is_compiled_and_counted_without_running_its_fixtures() {
        let failing = r#"{"data": {"x": 2}, "expect": {"total": "999"}}"#;
        let files = [
            ("uji/permit.toml", PERMIT),
            ("uji/levy.rhai", LEVY),
            ("uji/tests/a.json", failing),
        ];
        // Run, the fixture fails; taken as passed before, it is only counted. The caller
        // vouches for it with a pass record of these very files under the same conditions.
        let report = build(tree(&files), &Limits::default()).err().unwrap();
        assert_eq!(report.fixtures_failed, 1);
        let setup = ConnectorSetup::default();
        let r = build_passed(tree(&files), &Limits::default(), &Roles::default(), &setup).unwrap();
        assert!(r.report.passed_before);
        assert_eq!(
            (
                r.report.fixtures_passed,
                r.report.fixtures_reused,
                r.report.fixtures_failed
            ),
            (1, 1, 0)
        );
        assert!(
            r.report.summary().contains("not run again"),
            "{}",
            r.report.summary()
        );
        // Loading and compiling still happen: a file that does not compile is refused.
        let broken = [
            files[0],
            ("uji/levy.rhai", "fn levy(data, params) {\n  let = 1;\n}\n"),
            files[2],
        ];
        let report = build_passed(tree(&broken), &Limits::default(), &Roles::default(), &setup)
            .err()
            .unwrap();
        assert!(
            report.diagnostics[0]
                .to_string()
                .starts_with("uji/levy.rhai:2"),
            "{report:?}"
        );
    }

    #[test]
    fn a_failing_fixture_says_expected_and_actual() {
        let bad = r#"{"data": {"x": "10"}, "expect": {"total": "2"}}"#;
        let report = build(
            tree(&[
                ("uji/permit.toml", PERMIT),
                ("uji/levy.rhai", LEVY),
                ("uji/tests/a.json", bad),
            ]),
            &Limits::default(),
        )
        .err()
        .unwrap();
        assert_eq!(report.fixtures_failed, 1);
        let d = &report.diagnostics[0];
        assert_eq!(d.file, "uji/tests/a.json");
        assert_eq!(d.message, "expected total 2, got 1");
    }

    #[test]
    fn syntax_errors_are_located() {
        let report = build(
            tree(&[
                ("uji/permit.toml", PERMIT),
                ("uji/levy.rhai", "fn levy(data, params) {\n  let = 1;\n}\n"),
            ]),
            &Limits::default(),
        )
        .err()
        .unwrap();
        let d = &report.diagnostics[0];
        assert_eq!((d.file.as_str(), d.line), ("uji/levy.rhai", 2), "{d}");
    }

    #[test]
    fn toml_errors_are_located() {
        let report = build(
            tree(&[("uji/permit.toml", "name = \"Uji\"\nfields = 3\n")]),
            &Limits::default(),
        )
        .err()
        .unwrap();
        assert_eq!(report.diagnostics[0].line, 2, "{}", report.diagnostics[0]);
    }

    /// The `/validate` answer for `data` against permit `uji` of `release`, in Indonesian.
    fn validate_uji(release: &Release, data: &serde_json::Value) -> serde_json::Value {
        use crate::permits::pipeline::{self, Kind, Outcome};
        let permit = &release.permits["uji"];
        let errors = match pipeline::evaluate(
            permit,
            &release.host,
            &crate::scripts::CallContext::default(),
            data,
            &permit.script_params,
            Kind::Validate,
            crate::config::Language::Id,
        )
        .unwrap()
        {
            Outcome::Invalid(errors) => errors,
            Outcome::Valid { .. } => Vec::new(),
        };
        serde_json::json!({
            "valid": errors.is_empty(),
            "errors": pipeline::errors_json(&errors),
            "release": release.id,
        })
    }

    #[test]
    fn the_document_checklist_names_what_is_missing_repeated_or_unknown() {
        let permit = r#"name = "Uji"
documents_field = "dokumen"
[[fields]]
name = "dokumen"
type = "list"
items = "text"
[[requirements]]
code = "ktp"
name = "KTP"
[[requirements]]
code = "str"
name = "STR"
[[requirements]]
code = "foto"
name = "Pas foto"
required = false
"#;
        let r = build(tree(&[("uji/permit.toml", permit)]), &Limits::default())
            .map_err(|r| r.diagnostics)
            .unwrap();
        let data = serde_json::json!({"dokumen": ["ktp", "ktp", "sim"]});
        let output = validate_uji(&r, &data);
        let messages: Vec<&str> = output["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert_eq!(
            messages,
            [
                "dokumen `ktp` tercantum dua kali",
                "dokumen `sim` tidak dikenal",
                "dokumen wajib `str` (STR) belum dilampirkan"
            ]
        );
        let data = serde_json::json!({"dokumen": ["str", "ktp"]});
        let output = validate_uji(&r, &data);
        assert_eq!(output["valid"], true);
    }

    #[test]
    fn a_documents_field_that_is_not_a_list_of_codes_is_refused() {
        let permit = "name = \"Uji\"\ndocuments_field = \"dokumen\"\n[[fields]]\nname = \"dokumen\"\ntype = \"text\"\n";
        let report = build(tree(&[("uji/permit.toml", permit)]), &Limits::default())
            .err()
            .unwrap();
        assert_eq!(report.diagnostics[0].line, 2, "{}", report.diagnostics[0]);
    }

    #[test]
    fn reference_tables_come_from_toml_or_sibling_files_exactly() {
        let permit =
            "name = \"Uji\"\n[[fields]]\nname = \"zona\"\ntype = \"text\"\nrequired = true\n\
                      [tables.indeks]\nzona_1 = 1.25\n";
        let levy = "fn levy(data, params) {\n  let tarif = decimal(params.tables.tarif[data.zona]);\n  \
                    #{ items: [#{ code: \"sewa\", amount: tarif * params.tables.indeks[data.zona] }] }\n}\n";
        let fixture = r#"{"data": {"zona": "zona_1"}, "expect": {"total": "1250.125"}}"#;
        let r = build(
            tree(&[
                ("uji/permit.toml", permit),
                ("uji/levy.rhai", levy),
                ("uji/tables/tarif.toml", "zona_1 = \"1000.1\"\n"),
                ("uji/tests/a.json", fixture),
            ]),
            &Limits::default(),
        )
        .map_err(|r| r.diagnostics)
        .unwrap();
        assert_eq!(r.report.fixtures_passed, 1);
    }

    #[test]
    fn fixtures_pin_the_date_scripts_read() {
        let permit =
            "name = \"Uji\"\n[[fields]]\nname = \"tanggal\"\ntype = \"date\"\nrequired = true\n";
        let validate = "fn validate(data, params) {\n  if data.tanggal > today() { [#{ field: \"tanggal\", message: \"di masa depan\" }] } else { [] }\n}\n";
        let future = r#"{"today": "2026-01-10", "data": {"tanggal": "2026-01-11"}, "expect": {"errors": ["tanggal"]}}"#;
        let same_day = r#"{"today": "2026-01-10", "data": {"tanggal": "2026-01-10"}, "expect": {"valid": true}}"#;
        let files = [
            ("uji/permit.toml", permit),
            ("uji/validate.rhai", validate),
            ("uji/tests/depan.json", future),
            ("uji/tests/sama.json", same_day),
        ];
        let r = build(tree(&files), &Limits::default())
            .map_err(|r| r.diagnostics)
            .unwrap();
        assert_eq!(r.report.fixtures_passed, 2);
        // Without `today` the fixture cannot pass by the calendar's luck.
        let undated = r#"{"data": {"tanggal": "2026-01-10"}, "expect": {"valid": true}}"#;
        let report = build(
            tree(&[files[0], files[1], ("uji/tests/x.json", undated)]),
            &Limits::default(),
        )
        .err()
        .unwrap();
        assert!(
            report.diagnostics[0].message.contains("must set `today`"),
            "{}",
            report.diagnostics[0]
        );
    }

    /// `files` with `changes` applied (an empty text removes the file).
    fn changed(files: &[(&str, &str)], changes: &[(&str, &str)]) -> SourceTree {
        let mut all: BTreeMap<String, String> = files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        for (p, t) in changes {
            if t.is_empty() {
                all.remove(*p);
            } else {
                all.insert((*p).to_owned(), (*t).to_owned());
            }
        }
        SourceTree::from_files(all)
    }

    fn built(r: Result<Release, BuildReport>) -> Release {
        r.map_err(|r| r.diagnostics).unwrap()
    }

    /// (rebuilt, reused, fixtures reused) of a report.
    fn reuse(r: &BuildReport) -> (usize, usize, usize) {
        (r.permits_rebuilt, r.permits_reused, r.fixtures_reused)
    }

    const PLAIN: [(&str, &str); 6] = [
        ("uji/permit.toml", PERMIT),
        ("uji/levy.rhai", LEVY),
        ("uji/tests/a.json", FIXTURE),
        ("lain/permit.toml", PERMIT),
        ("lain/levy.rhai", LEVY),
        ("lain/tests/a.json", FIXTURE),
    ];

    #[test]
    fn a_change_to_one_permit_rebuilds_and_retests_only_that_one() {
        let limits = Limits::default();
        let base = built(build(tree(&PLAIN), &limits));
        assert_eq!(reuse(&base.report), (2, 0, 0));
        let next = built(build_on(
            changed(
                &PLAIN,
                &[(
                    "lain/tests/b.json",
                    r#"{"data": {"x": "20"}, "expect": {"total": "2"}}"#,
                )],
            ),
            &limits,
            Some(&base),
        ));
        assert_eq!(reuse(&next.report), (1, 1, 1), "{}", next.report.summary());
        assert_eq!(next.report.fixtures_passed, 3);
        // A release keeps the count of each permit's fixtures.
        assert_eq!(
            (
                next.permits["lain"].fixture_count,
                next.permits["uji"].fixture_count
            ),
            (2, 1)
        );
        assert!(Arc::ptr_eq(&next.permits["uji"], &base.permits["uji"]));
        assert!(!Arc::ptr_eq(&next.permits["lain"], &base.permits["lain"]));
        // The reused permit serves from the new release like any other.
        let out = validate_uji(&next, &serde_json::json!({"x": "1"}));
        assert_eq!(out["valid"], true, "{out}");

        // A removed permit is gone, the rest reused; other limits rebuild everything.
        let fewer = built(build_on(
            changed(
                &PLAIN,
                &[
                    ("lain/permit.toml", ""),
                    ("lain/levy.rhai", ""),
                    ("lain/tests/a.json", ""),
                ],
            ),
            &limits,
            Some(&next),
        ));
        assert_eq!((fewer.report.permits, reuse(&fewer.report)), (1, (0, 1, 1)));
        let other = Limits {
            max_operations: 1000,
            ..Limits::default()
        };
        let rebuilt = built(build_on(tree(&PLAIN), &other, Some(&base)));
        assert_eq!(reuse(&rebuilt.report), (2, 0, 0));
    }

    #[test]
    fn a_library_change_retests_every_permit_importing_it_directly_or_not() {
        let levy_with = |m: &str| {
            format!("import \"{m}\" as m;\nfn levy(data, params) {{\n  #{{ items: [#{{ code: \"a\", label: \"A\", amount: m::rate(data.x) }}] }}\n}}\n")
        };
        let (via, direct) = (levy_with("tarif"), levy_with("dasar"));
        let files = [
            ("lib/dasar.rhai", "fn rate(x) { x / 10 }\n"),
            (
                "lib/tarif.rhai",
                "import \"dasar\" as d;\nfn rate(x) { d::rate(x) }\n",
            ),
            ("lib/lain.rhai", "fn apa() { 1 }\n"),
            ("lewat/permit.toml", PERMIT),
            ("lewat/levy.rhai", via.as_str()),
            ("lewat/tests/a.json", FIXTURE),
            ("langsung/permit.toml", PERMIT),
            ("langsung/levy.rhai", direct.as_str()),
            ("langsung/tests/a.json", FIXTURE),
            ("bebas/permit.toml", PERMIT),
            ("bebas/levy.rhai", LEVY),
            ("bebas/tests/a.json", FIXTURE),
        ];
        let limits = Limits::default();
        let base = built(build(tree(&files), &limits));

        // `dasar` is imported by `langsung` and, through `tarif`, by `lewat`.
        let next = built(build_on(
            changed(
                &files,
                &[("lib/dasar.rhai", "fn rate(x) {\n  x * 0.1\n}\n")],
            ),
            &limits,
            Some(&base),
        ));
        assert_eq!(reuse(&next.report), (2, 1, 1), "{}", next.report.summary());
        assert!(Arc::ptr_eq(&next.permits["bebas"], &base.permits["bebas"]));

        // `tarif` only by `lewat`; a module nobody imports rebuilds nothing.
        let tarif =
            "import \"dasar\" as d;\n// by the regional regulation\nfn rate(x) { d::rate(x) }\n";
        let next = built(build_on(
            changed(&files, &[("lib/tarif.rhai", tarif)]),
            &limits,
            Some(&base),
        ));
        assert_eq!(reuse(&next.report), (1, 2, 2), "{}", next.report.summary());
        let next = built(build_on(
            changed(&files, &[("lib/lain.rhai", "fn apa() { 2 }\n")]),
            &limits,
            Some(&base),
        ));
        assert_eq!(reuse(&next.report), (0, 3, 3), "{}", next.report.summary());

        // A library change that breaks an importer's fixture is rejected, naming the fixture,
        // even though that permit's folder did not change.
        let report = build_on(
            changed(&files, &[("lib/dasar.rhai", "fn rate(x) { x / 5 }\n")]),
            &limits,
            Some(&base),
        )
        .err()
        .unwrap();
        let files_named: Vec<&str> = report.diagnostics.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(files_named, ["langsung/tests/a.json", "lewat/tests/a.json"]);
        assert_eq!(report.diagnostics[0].message, "expected total 1, got 2");
        assert_eq!(reuse(&report), (2, 1, 1));

        // Removing a module its importers need is rejected too.
        let report = build_on(
            changed(&files, &[("lib/tarif.rhai", "")]),
            &limits,
            Some(&base),
        )
        .err()
        .unwrap();
        let d = &report.diagnostics[0];
        assert_eq!(d.file, "lewat/levy.rhai", "{d}");
        assert!(
            d.message.contains("tarif") && d.message.contains("lewat/tests/a.json"),
            "{d}"
        );
    }

    #[test]
    fn a_broken_change_on_a_base_is_rejected_with_its_diagnostic() {
        let limits = Limits::default();
        let base = built(build(tree(&PLAIN), &limits));
        let report = build_on(
            changed(
                &PLAIN,
                &[("lain/levy.rhai", "fn levy(data, params) {\n  let = 1;\n}\n")],
            ),
            &limits,
            Some(&base),
        )
        .err()
        .unwrap();
        let d = &report.diagnostics[0];
        assert_eq!((d.file.as_str(), d.line), ("lain/levy.rhai", 2), "{d}");
        assert_eq!(report.permits_reused, 1);
    }

    #[test]
    fn fixtures_run_in_parallel_but_report_in_a_fixed_order() {
        let wrong = r#"{"data": {"x": "10"}, "expect": {"total": "7"}}"#;
        let mut files: Vec<(String, String)> = Vec::new();
        for p in 0..12 {
            files.push((format!("p{p:02}/permit.toml"), PERMIT.to_owned()));
            files.push((format!("p{p:02}/levy.rhai"), LEVY.to_owned()));
            for f in 0..5 {
                files.push((format!("p{p:02}/tests/f{f}.json"), wrong.to_owned()));
            }
        }
        let expected: Vec<String> = files
            .iter()
            .filter(|(p, _)| p.contains("/tests/"))
            .map(|(p, _)| p.clone())
            .collect();
        let tree = SourceTree::from_files(files.into_iter().collect());
        for _ in 0..3 {
            let report = build(tree.clone(), &Limits::default()).err().unwrap();
            let got: Vec<&str> = report.diagnostics.iter().map(|d| d.file.as_str()).collect();
            assert_eq!(got, expected);
            assert_eq!(report.fixtures_failed, 60);
        }
    }

    const FLOW: &str = "name = \"Uji\"\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\n[[flow]]\nstep = \"a\"\nlabel = \"A\"\nrole = \"front_office\"\nsla_days = 2\nguard = \"ada_x\"\n[[flow]]\nstep = \"b\"\nlabel = \"B\"\nrole = \"kepala_dinas\"\n";
    const GUARD: &str =
        "fn ada_x(app, params) {\n  if \"x\" in app.data { () } else { \"x belum diisi\" }\n}\n";
    const GUARD_FIXTURE: &str = r#"{"guard": "ada_x", "application": {"data": {}}, "expect": {"allowed": false, "message": "x belum diisi"}}"#;

    #[test]
    fn guard_fixtures_run_with_the_others_and_a_failure_rejects_the_release() {
        let files = [
            ("uji/permit.toml", FLOW),
            ("uji/flow.rhai", GUARD),
            (
                "uji/tests/a.json",
                r#"{"data": {"x": "1"}, "expect": {"valid": true}}"#,
            ),
            ("uji/tests/g.json", GUARD_FIXTURE),
        ];
        let r = built(build(tree(&files), &Limits::default()));
        assert_eq!(r.report.fixtures_passed, 2);
        assert_eq!(r.permits["uji"].flow().steps().len(), 2);

        let wrong = r#"{"guard": "ada_x", "application": {"data": {}}, "expect": {"allowed": false, "message": "x kosong"}}"#;
        let report = build(
            tree(&[files[0], files[1], files[2], ("uji/tests/g.json", wrong)]),
            &Limits::default(),
        )
        .err()
        .unwrap();
        let d = &report.diagnostics[0];
        assert_eq!(d.file, "uji/tests/g.json");
        assert_eq!(
            d.message,
            "guard `ada_x`: expected the message `x kosong`, got `x belum diisi`"
        );
        assert_eq!(
            d.actual.as_deref(),
            Some(&serde_json::json!({"allowed": false, "message": "x belum diisi"}))
        );
        let allowed = r#"{"guard": "ada_x", "application": {"data": {"x": 1}}, "expect": {"allowed": false}}"#;
        let report = build(
            tree(&[files[0], files[1], files[2], ("uji/tests/g.json", allowed)]),
            &Limits::default(),
        )
        .err()
        .unwrap();
        assert_eq!(
            report.diagnostics[0].message,
            "guard `ada_x`: expected allowed = false, got true"
        );
        let unknown = r#"{"guard": "lain", "application": {}, "expect": {"allowed": true}}"#;
        let report = build(
            tree(&[files[0], files[1], files[2], ("uji/tests/g.json", unknown)]),
            &Limits::default(),
        )
        .err()
        .unwrap();
        assert_eq!(
            report.diagnostics[0].message,
            "guard `lain` is not defined: uji/flow.rhai has no `fn lain(app, params)`"
        );
    }

    #[test]
    fn a_changed_flow_rhai_rebuilds_its_permit() {
        let files = [
            ("uji/permit.toml", FLOW),
            ("uji/flow.rhai", GUARD),
            ("uji/tests/g.json", GUARD_FIXTURE),
            ("lain/permit.toml", PERMIT),
            ("lain/levy.rhai", LEVY),
            ("lain/tests/a.json", FIXTURE),
        ];
        let limits = Limits::default();
        let base = built(build(tree(&files), &limits));
        let report = build_on(
            changed(
                &files,
                &[("uji/flow.rhai", "fn ada_x(app, params) {\n  ()\n}\n")],
            ),
            &limits,
            Some(&base),
        )
        .err()
        .unwrap();
        assert_eq!(reuse(&report), (1, 1, 1));
        assert_eq!(report.diagnostics[0].file, "uji/tests/g.json");
        // A library module that only flow.rhai imports: changing it retests the guards.
        let importing = [
            ("lib/syarat.rhai", "fn pesan() { \"x belum diisi\" }\n"),
            ("uji/permit.toml", FLOW),
            (
                "uji/flow.rhai",
                "import \"syarat\" as s;\nfn ada_x(app, params) {\n  if \"x\" in app.data { () } else { s::pesan() }\n}\n",
            ),
            ("uji/tests/g.json", GUARD_FIXTURE),
            ("lain/permit.toml", PERMIT),
            ("lain/levy.rhai", LEVY),
            ("lain/tests/a.json", FIXTURE),
        ];
        let base = built(build(tree(&importing), &limits));
        let report = build_on(
            changed(
                &importing,
                &[("lib/syarat.rhai", "fn pesan() { \"x kosong\" }\n")],
            ),
            &limits,
            Some(&base),
        )
        .err()
        .unwrap();
        assert_eq!(reuse(&report), (1, 1, 1));
        assert_eq!(
            report.diagnostics[0].message,
            "guard `ada_x`: expected the message `x belum diisi`, got `x kosong`"
        );
        // Other roles are another office: nothing is reused, and the flow is checked again.
        let fewer = crate::auth::Roles::new(["front_office".to_owned()]).unwrap();
        let report = build_for(tree(&files), &limits, &fewer, Some(&base))
            .err()
            .unwrap();
        assert_eq!(reuse(&report), (1, 0, 0), "{}", report.summary());
        assert!(
            report.diagnostics[0]
                .message
                .contains("unknown role `kepala_dinas`"),
            "{:?}",
            report.diagnostics
        );
    }

    #[test]
    fn the_calendar_is_part_of_the_release() {
        let limits = Limits::default();
        let plain = built(build(tree(&PLAIN), &limits));
        assert_eq!(plain.calendar(), &Calendar::default());
        let calendar = "weekend = [\"friday\"]\n[[holiday]]\ndate = \"2026-01-01\"\nname = \"Tahun Baru 2026 Masehi\"\n";
        let with = built(build_on(
            changed(&PLAIN, &[(CALENDAR_FILE, calendar)]),
            &limits,
            Some(&plain),
        ));
        assert_ne!(with.id, plain.id, "the calendar is in the content hash");
        assert_eq!(
            reuse(&with.report),
            (0, 2, 2),
            "a calendar change reloads, rebuilding no permit"
        );
        let day = |s| crate::domain::parse_date(s).unwrap();
        assert_eq!(
            with.calendar().add_working_days(day("2025-12-31"), 1),
            day("2026-01-03")
        );
        let report = build(
            changed(&PLAIN, &[(CALENDAR_FILE, "weekend = [\"sabtu\"]\n")]),
            &limits,
        )
        .err()
        .unwrap();
        assert_eq!(report.diagnostics[0].file, CALENDAR_FILE);
        assert!(
            report.diagnostics[0]
                .message
                .contains("`\"sabtu\"` is not a weekday name"),
            "{}",
            report.diagnostics[0]
        );
    }

    #[test]
    fn same_content_same_id() {
        let a = tree(&[("uji/permit.toml", PERMIT)]);
        let b = tree(&[("uji/permit.toml", PERMIT)]);
        let c = tree(&[("uji/permit.toml", "name = \"Lain\"\n")]);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
    }

    #[test]
    fn folders_are_the_same_when_their_paths_and_texts_are_whether_or_not_shared() {
        let text = String::from("name = \"Uji\"\n");
        let copy = text.clone();
        let files = |t: &'static str| PermitFiles::from([("permit.toml", t)]);
        let shared: &'static str = Box::leak(text.into_boxed_str());
        let copied: &'static str = Box::leak(copy.into_boxed_str());
        assert!(same_files(&files(shared), files(shared).into_iter()));
        assert!(
            same_files(&files(shared), files(copied).into_iter()),
            "equal texts apart"
        );
        assert!(!same_files(
            &files(shared),
            files("name = \"Lain\"\n").into_iter()
        ));
        // The same text at another path, or with a file more, is another folder.
        let moved = PermitFiles::from([("izin.toml", shared)]);
        assert!(!same_files(&files(shared), moved.into_iter()));
        let more = PermitFiles::from([("permit.toml", shared), ("levy.rhai", shared)]);
        assert!(!same_files(&files(shared), more.clone().into_iter()));
        // A shorter view of the same text starts at the same address and is still not it.
        let prefix = &shared[..4];
        assert!(!same_files(
            &files(shared),
            PermitFiles::from([("permit.toml", prefix)]).into_iter()
        ));
        // A file fewer on either side.
        assert!(!same_files(&more, files(shared).into_iter()));
        assert!(!same_files(&files(shared), std::iter::empty()));
    }

    #[test]
    fn a_folder_of_a_release_is_its_paths_under_that_name_and_nothing_beside_it() {
        let t = tree(&[
            ("a/permit.toml", "1"),
            ("a/tests/satu.json", "2"),
            ("a-b/permit.toml", "3"),
            ("a.toml", "4"),
            ("ab/permit.toml", "5"),
            ("calendar.toml", "6"),
        ]);
        let a: Vec<(&str, &str)> = folder_files(&t, "a").collect();
        assert_eq!(a, [("permit.toml", "1"), ("tests/satu.json", "2")]);
        assert_eq!(folder_files(&t, "a-b").count(), 1);
        assert_eq!(folder_files(&t, "b").count(), 0);
        // It agrees with the grouping a build makes of the candidate.
        let (_, folders, _) = split(&t);
        for (name, files) in &folders {
            assert!(same_files(files, folder_files(&t, name)), "{name}");
        }
    }
}
