//! What a fixture's result depends on besides the release's own files: the engine that runs it
//! and the office's settings. A release that passed under the same conditions passes again, so
//! a restart or a reactivation need not run its fixtures (`release::build_passed`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

use crate::auth::Roles;
use crate::config::Limits;

/// A digest of the test conditions, stored with each release that passed
/// ([`crate::store::records::PassRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestConditions(String);

impl TestConditions {
    /// The conditions of this process: its executable, as the file system knows it (a rebuilt,
    /// upgraded or copied binary is another file, with another inode or change time), and the
    /// limits, roles and connector settings. `None` when the executable cannot be looked at (it
    /// was deleted while running): then every build runs its fixtures.
    pub fn of_this_process(
        limits: &Limits,
        roles: &Roles,
        overrides: &BTreeMap<String, toml::Table>,
    ) -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        let meta = std::fs::metadata(&exe).ok()?;
        let engine = format!(
            "{} {} {} {} {}.{} {}.{}",
            env!("CARGO_PKG_VERSION"),
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        Some(Self::of(&engine, limits, roles, overrides))
    }

    /// The conditions of `engine` (anything naming one build of it) with these settings. The
    /// settings are taken in their debug form: the same build always prints them the same way.
    pub fn of(
        engine: &str,
        limits: &Limits,
        roles: &Roles,
        overrides: &BTreeMap<String, toml::Table>,
    ) -> Self {
        let mut h = Sha256::new();
        for part in [
            engine.to_owned(),
            format!("{limits:?}"),
            format!("{roles:?}"),
            format!("{overrides:?}"),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        Self(hex::encode(h.finalize()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_engine_or_any_other_setting_is_another_condition() {
        let (limits, roles, none) = (Limits::default(), Roles::default(), BTreeMap::new());
        let base = TestConditions::of("a", &limits, &roles, &none);
        assert_eq!(base, TestConditions::of("a", &limits, &roles, &none));
        assert_ne!(base, TestConditions::of("b", &limits, &roles, &none));
        let slower = Limits {
            max_operations: limits.max_operations + 1,
            ..limits.clone()
        };
        assert_ne!(base, TestConditions::of("a", &slower, &roles, &none));
        let overrides = BTreeMap::from([("oss-rba".to_owned(), toml::Table::new())]);
        assert_ne!(base, TestConditions::of("a", &limits, &roles, &overrides));
        let here = TestConditions::of_this_process(&limits, &roles, &none);
        assert!(here.is_some(), "the test binary can be looked at");
        assert_eq!(
            here,
            TestConditions::of_this_process(&limits, &roles, &none)
        );
    }
}
