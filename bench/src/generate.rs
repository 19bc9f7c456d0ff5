//! Makes a large rules tree from the sample one: `count` permit types, each a varied copy of a
//! sample type (its own id, name, parameter values and fixtures), plus the sample's `lib/`.
//! Nothing it writes is committed; the harness puts it in a temporary folder.
//!
//! Copies of `pbg` get their own SHST. Each such fixture that expects a total gets the total and
//! lines the plain-Rust levy (`native.rs`, checked against every sample fixture) computes for
//! the copy's parameters and the fixture's overrides, so every copy's fixtures are right for its
//! own values and the tree builds as a release. Copies of the other types differ in id and name.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use rust_decimal::Decimal;
use serde_json::Value as Json;
use toml_edit::{value, DocumentMut};

use crate::native::PbgRules;

/// The sample permit types that are copied, in turn.
const SAMPLES: [&str; 3] = ["pbg", "sewa-tanah", "sip-dokter"];

/// What was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Generated {
    pub permits: usize,
    pub files: usize,
}

/// Id of the `i`-th generated permit type.
pub fn permit_id(i: usize) -> Result<String> {
    let sample = SAMPLES
        .get(i % SAMPLES.len())
        .ok_or_else(|| anyhow!("no sample type"))?;
    Ok(format!("{sample}-{i:04}"))
}

/// Writes `count` permit types copied from the sample tree `sample` (which must hold
/// `pbg`, `sewa-tanah`, `sip-dokter` and `lib/`) into the empty folder `out`.
pub fn generate(sample: &Path, out: &Path, count: usize) -> Result<Generated> {
    let mut made = Generated::default();
    made.files += copy_plain(&sample.join("lib"), &out.join("lib"))?;
    for i in 0..count {
        let id = permit_id(i)?;
        let kind = SAMPLES
            .get(i % SAMPLES.len())
            .ok_or_else(|| anyhow!("no sample type"))?;
        made.files += copy_permit(&sample.join(kind), &out.join(&id), kind, i)?;
        made.permits += 1;
    }
    Ok(made)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Files of `dir` (not recursive), sorted by name.
fn files_of(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Copies the files of `from` into `to` unchanged; returns how many.
fn copy_plain(from: &Path, to: &Path) -> Result<usize> {
    let files = files_of(from)?;
    for f in &files {
        let name = f.file_name().ok_or_else(|| anyhow!("no file name"))?;
        write(&to.join(name), &read(f)?)?;
    }
    Ok(files.len())
}

/// Copies the folder `from` into `to`, recursively; returns how many files.
pub fn copy_tree(from: &Path, to: &Path) -> Result<usize> {
    let mut n = 0;
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            n += copy_tree(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))
                .with_context(|| format!("copying {}", path.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The `i`-th copy's SHST: Kota Metro's Rp 5 000 000 plus a step that differs per copy, so
/// copies compute different totals (and fixtures that would pass unchanged are the exception).
fn varied_shst(base: Decimal, i: usize) -> Decimal {
    base + Decimal::from(1_250 * (i % 997 + 1))
}

fn copy_permit(from: &Path, to: &Path, kind: &str, i: usize) -> Result<usize> {
    let toml_path = from.join("permit.toml");
    let mut doc: DocumentMut = read(&toml_path)?
        .parse()
        .with_context(|| format!("parsing {}", toml_path.display()))?;
    let name = doc
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| anyhow!("{} has no name", toml_path.display()))?
        .to_owned();
    doc.insert("name", value(format!("{name} (salinan {i})")));

    // For pbg: a SHST of its own, and the plain-Rust levy of the copy to recompute fixtures.
    let rules = if kind == "pbg" {
        let base = PbgRules::from_toml(&doc.to_string())?.shst();
        doc.get_mut("params")
            .and_then(toml_edit::Item::as_table_like_mut)
            .ok_or_else(|| anyhow!("{} has no [params]", toml_path.display()))?
            .insert("shst", value(varied_shst(base, i).to_string()));
        Some(PbgRules::from_toml(&doc.to_string())?)
    } else {
        None
    };
    let mut files = 1;
    write(&to.join("permit.toml"), &doc.to_string())?;

    for f in files_of(from)? {
        let name = f.file_name().ok_or_else(|| anyhow!("no file name"))?;
        if name != "permit.toml" {
            write(&to.join(name), &read(&f)?)?;
            files += 1;
        }
    }
    let tests = from.join("tests");
    if tests.is_dir() {
        for f in files_of(&tests)? {
            let name = f.file_name().ok_or_else(|| anyhow!("no file name"))?;
            let text = read(&f)?;
            let text = match &rules {
                Some(rules) => refigure(rules, &text)
                    .with_context(|| format!("recomputing {} for copy {i}", f.display()))?,
                None => text,
            };
            write(&to.join("tests").join(name), &text)?;
            files += 1;
        }
    }
    Ok(files)
}

/// A pbg fixture with its expected total and lines recomputed for `rules` (plus the fixture's
/// own `params` overrides); fixtures without a total (validation cases) are unchanged.
fn refigure(rules: &PbgRules, text: &str) -> Result<String> {
    let mut fixture: Json = serde_json::from_str(text)?;
    if fixture.pointer("/expect/total").is_none() {
        return Ok(text.to_owned());
    }
    let rules = rules.with_overrides(fixture.get("params").unwrap_or(&Json::Null))?;
    let data = fixture
        .get("data")
        .ok_or_else(|| anyhow!("fixture without data"))?;
    let levy = rules.levy(data)?;
    let expect = fixture
        .get_mut("expect")
        .and_then(Json::as_object_mut)
        .ok_or_else(|| anyhow!("fixture expect is not an object"))?;
    expect.insert("total".into(), Json::String(levy.total.to_string()));
    let items = levy
        .items
        .iter()
        .map(|l| serde_json::json!({ "code": l.code, "amount": l.amount.to_string() }))
        .collect();
    expect.insert("items".into(), Json::Array(items));
    if let Some(d) = fixture.get_mut("description") {
        *d = Json::String(format!(
            "generated copy (SHST {}): {}",
            rules.shst(),
            d.as_str().unwrap_or_default()
        ));
    }
    Ok(serde_json::to_string_pretty(&fixture)?)
}

/// The expected total of worked example B with two prasarana lines for generated permit `id`
/// (a pbg copy) in the tree at `root`.
pub fn case_b_total(root: &Path, id: &str, data: &Json) -> Result<Decimal> {
    let rules = PbgRules::from_toml(&read(&root.join(id).join("permit.toml"))?)?;
    Ok(rules.levy(data)?.total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use pintu::config::Limits;
    use pintu::release::{build, SourceTree};

    fn sample() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
    }

    /// A generated tree of 20 types builds as one release: every permit type is there and every
    /// fixture passes, so the recomputed pbg totals are right for each copy's own SHST.
    #[test]
    fn a_generated_tree_of_20_types_builds_as_a_release() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate(&sample(), dir.path(), 20).unwrap();
        assert_eq!(made.permits, 20);
        let limits = Limits::default();
        let tree = SourceTree::read_dir(dir.path(), &limits).unwrap();
        let release = match build(tree, &limits) {
            Ok(r) => r,
            Err(report) => panic!("generated tree rejected: {:#?}", report.diagnostics),
        };
        assert_eq!(release.permits.len(), 20);
        assert!(release.permits.contains_key("pbg-0000"));
        assert!(
            release.permits.contains_key("sip-dokter-0019")
                || release.permits.contains_key("sewa-tanah-0019")
                || release.permits.contains_key("pbg-0019")
        );
        assert_eq!(release.report.fixtures_failed, 0);
        assert!(
            release.report.fixtures_passed > 20 * 20,
            "{:?}",
            release.report
        );

        // The copies really differ: two pbg copies expect different totals for case B.
        let b = read(&dir.path().join("pbg-0000/tests/b_usaha_lima_lantai.json")).unwrap();
        let b3 = read(&dir.path().join("pbg-0003/tests/b_usaha_lima_lantai.json")).unwrap();
        let total = |t: &str| serde_json::from_str::<Json>(t).unwrap()["expect"]["total"].clone();
        assert_ne!(total(&b), total(&b3));
        assert_ne!(total(&b), Json::String("34607588".into()));
    }

    /// Without recomputing, a copy's own SHST would fail its fixtures: the check above can fail.
    #[test]
    fn a_copy_with_the_sample_totals_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        generate(&sample(), dir.path(), 1).unwrap();
        let from = sample().join("pbg/tests/b_usaha_lima_lantai.json");
        std::fs::copy(
            from,
            dir.path().join("pbg-0000/tests/b_usaha_lima_lantai.json"),
        )
        .unwrap();
        let limits = Limits::default();
        let tree = SourceTree::read_dir(dir.path(), &limits).unwrap();
        let report = build(tree, &limits)
            .err()
            .expect("stale total must be rejected");
        assert!(report.fixtures_failed >= 1, "{report:?}");
    }
}
