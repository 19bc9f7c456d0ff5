//! A release is the whole rules tree, identified by its content hash, compiled and tested as one.
//! Candidates that fail anything are never served.

pub mod source;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Limits;
use crate::diagnostic::Diagnostic;
use crate::permits::{fixtures, Permit, PermitFiles};
use crate::scripts::ScriptHost;
pub use source::SourceTree;

/// Folder of shared Rhai modules inside the rules tree.
pub const LIB_DIR: &str = "lib";

/// A built, fully tested release.
pub struct Release {
    pub id: String,
    pub sources: SourceTree,
    pub host: ScriptHost,
    pub permits: BTreeMap<String, Permit>,
    pub report: BuildReport,
}

/// What building a candidate found; kept for accepted and rejected candidates alike.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub release: String,
    pub permits: usize,
    pub fixtures_passed: usize,
    pub fixtures_failed: usize,
    pub diagnostics: Vec<Diagnostic>,
    /// Worth fixing but not a reason to reject (a permit type without fixtures).
    pub warnings: Vec<Diagnostic>,
    pub duration: Duration,
}

impl Serialize for BuildReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            release: &'a str,
            permits: usize,
            fixtures_passed: usize,
            fixtures_failed: usize,
            diagnostics: &'a [Diagnostic],
            warnings: &'a [Diagnostic],
            /// Milliseconds; kept under its first name, which did not say the unit.
            duration: u64,
            duration_ms: u64,
        }
        let ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        Shown {
            release: &self.release,
            permits: self.permits,
            fixtures_passed: self.fixtures_passed,
            fixtures_failed: self.fixtures_failed,
            diagnostics: &self.diagnostics,
            warnings: &self.warnings,
            duration: ms,
            duration_ms: ms,
        }
        .serialize(s)
    }
}

impl BuildReport {
    pub fn ok(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// One line for logs and the end of `pintu check`.
    pub fn summary(&self) -> String {
        format!(
            "release {}: {} permit types, {} fixtures passed, {} failed, {} problems, {} warnings ({} ms)",
            self.release,
            self.permits,
            self.fixtures_passed,
            self.fixtures_failed,
            self.diagnostics.len(),
            self.warnings.len(),
            self.duration.as_millis()
        )
    }
}

/// Builds a candidate from `tree`: parse, compile, load every permit, run every fixture.
pub fn build(tree: SourceTree, limits: &Limits) -> Result<Release, BuildReport> {
    let started = Instant::now();
    let mut report = BuildReport {
        release: tree.id().to_owned(),
        ..BuildReport::default()
    };

    let mut libs = BTreeMap::new();
    let mut folders: BTreeMap<&str, PermitFiles<'_>> = BTreeMap::new();
    for (path, text) in tree.files() {
        let Some((top, rest)) = path.split_once('/') else {
            continue; // top-level files (README and the like) are documentation
        };
        if top == LIB_DIR {
            match rest.strip_suffix(".rhai").filter(|n| !n.contains('/')) {
                Some(name) => {
                    libs.insert(name.to_owned(), (path.clone(), text.clone()));
                }
                None if rest.ends_with(".md") => {}
                None => report.diagnostics.push(Diagnostic::file(
                    path,
                    "lib/ holds only `<name>.rhai` modules",
                )),
            }
            continue;
        }
        folders.entry(top).or_default().insert(rest, text.as_str());
    }

    let host = ScriptHost::new(limits, libs);
    report.diagnostics.extend(host.check_libs());

    let mut permits = BTreeMap::new();
    for (id, files) in &folders {
        if !valid_id(id) {
            report.diagnostics.push(Diagnostic::file(
                format!("{id}/"),
                format!("permit id `{id}` must be lowercase letters, digits, `-` or `_`"),
            ));
            continue;
        }
        match Permit::load(id, files, &host) {
            Ok(p) => {
                permits.insert((*id).to_owned(), p);
            }
            Err(mut d) => report.diagnostics.append(&mut d),
        }
    }
    report.permits = permits.len();

    for permit in permits.values() {
        if permit.fixtures.is_empty() {
            report.warnings.push(Diagnostic::file(
                format!("{}/permit.toml", permit.id),
                format!(
                    "permit type `{}` has no fixtures: add one to `{}/tests/` so every change to it is tested",
                    permit.id, permit.id
                ),
            ));
        }
        for (file, fixture) in &permit.fixtures {
            match fixtures::run(permit, &host, file, fixture) {
                Ok(()) => report.fixtures_passed += 1,
                Err(d) => {
                    report.fixtures_failed += 1;
                    report.diagnostics.push(d);
                }
            }
        }
    }
    if permits.is_empty() && report.diagnostics.is_empty() {
        report.diagnostics.push(Diagnostic::file(
            ".",
            "the rules folder defines no permit type",
        ));
    }
    report.duration = started.elapsed();
    if !report.ok() {
        return Err(report);
    }
    Ok(Release {
        id: tree.id().to_owned(),
        sources: tree,
        host,
        permits,
        report,
    })
}

fn valid_id(id: &str) -> bool {
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
            data,
            &permit.params,
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

    #[test]
    fn same_content_same_id() {
        let a = tree(&[("uji/permit.toml", PERMIT)]);
        let b = tree(&[("uji/permit.toml", PERMIT)]);
        let c = tree(&[("uji/permit.toml", "name = \"Lain\"\n")]);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
    }
}
