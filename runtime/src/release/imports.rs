//! Which library modules a script imports, read from its text, so that a candidate knows which
//! permits a changed module can affect. The reading errs on the side of rebuilding: a word
//! `import` anywhere (a comment included) counts, and one not followed by a plain string
//! literal (a computed module name) counts as importing every module.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;

use crate::permits::PermitFiles;

/// The modules a script or module names in its `import` statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imports {
    Named(BTreeSet<String>),
    /// A module name that is not a literal: it may be any module.
    Any,
}

fn pattern() -> Option<&'static Regex> {
    static PATTERN: OnceLock<Option<Regex>> = OnceLock::new();
    PATTERN
        .get_or_init(|| Regex::new(r#"\bimport\b(\s*"([^"\\\r\n]*)")?"#).ok())
        .as_ref()
}

/// The imports of one source text.
pub fn of(text: &str) -> Imports {
    let Some(pattern) = pattern() else {
        return Imports::Any;
    };
    let mut names = BTreeSet::new();
    for found in pattern.captures_iter(text) {
        match found.get(2) {
            Some(name) => {
                names.insert(name.as_str().to_owned());
            }
            None => return Imports::Any,
        }
    }
    Imports::Named(names)
}

/// Every module the scripts of a permit folder import, directly or through other modules
/// (`libs` maps each module of the candidate to its own imports); `None` when that may be any
/// module. Names of modules that do not exist are included, so adding one counts as a change.
pub fn closure(
    files: &PermitFiles<'_>,
    libs: &std::collections::BTreeMap<&str, Imports>,
) -> Option<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for (path, text) in files {
        if !path.ends_with(".rhai") {
            continue;
        }
        match of(text) {
            Imports::Named(names) => todo.extend(names),
            Imports::Any => return None,
        }
    }
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        match libs.get(name.as_str()) {
            Some(Imports::Named(names)) => todo.extend(names.iter().cloned()),
            Some(Imports::Any) => return None,
            None => {}
        }
    }
    Some(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn named(names: &[&str]) -> Imports {
        Imports::Named(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn literal_imports_are_named_and_computed_ones_are_any() {
        assert_eq!(
            of("import \"angka\" as a;\nfn f() { import \"periksa\" as p; }\n"),
            named(&["angka", "periksa"])
        );
        assert_eq!(of("fn reimport_x(important) { 1 }"), named(&[]));
        assert_eq!(of("let m = \"angka\";\nimport m as a;\n"), Imports::Any);
        // A comment can only make the reading wider, never narrower.
        assert_eq!(of("// import \"lama\" as l;\n"), named(&["lama"]));
    }

    #[test]
    fn the_closure_follows_modules_that_import_modules() {
        let files: PermitFiles<'_> = [("levy.rhai", "import \"pbg_index\" as i;")]
            .into_iter()
            .collect();
        let libs: BTreeMap<&str, Imports> = [
            ("pbg_index", named(&["angka"])),
            ("angka", named(&[])),
            ("dokumen", named(&["periksa"])),
        ]
        .into_iter()
        .collect();
        let used = closure(&files, &libs).unwrap();
        assert_eq!(used.into_iter().collect::<Vec<_>>(), ["angka", "pbg_index"]);
        let libs: BTreeMap<&str, Imports> = [("pbg_index", Imports::Any)].into_iter().collect();
        assert_eq!(closure(&files, &libs), None);
    }
}
