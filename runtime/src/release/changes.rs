//! What the watcher saw change in the rules folder since the last read, so that the read after
//! a save looks at the paths that changed rather than at every file of the folder.

use std::collections::BTreeSet;

/// Past this many changed paths between two reads (a `git checkout` of a big office) a whole
/// read costs no more than looking at each, and the list stops growing.
const MAX_PATHS: usize = 10_000;

/// The changes noted since the last read. Until a watcher notes them from before a read on,
/// every read is a whole one.
#[derive(Debug, Default)]
pub struct FolderChanges {
    /// A watcher has noted every change since before the last read.
    watching: bool,
    /// Something changed that no path tells (the folder itself, a lost event): the next read
    /// looks at everything.
    everything: bool,
    /// Changed paths, `/`-separated and relative to the rules folder.
    paths: BTreeSet<String>,
}

impl FolderChanges {
    /// A watcher notes every change from now on; the next read, which may have missed some
    /// before, is a whole one.
    pub fn watching_from_now(&mut self) {
        self.watching = true;
        self.everything = true;
        self.paths.clear();
    }

    /// No watcher notes changes any more: every read is a whole one.
    pub fn not_watching(&mut self) {
        self.watching = false;
    }

    /// `rel` (relative to the rules folder, `/`-separated; empty for the folder itself) was
    /// created, changed, removed or renamed.
    pub fn changed(&mut self, rel: String) {
        if rel.is_empty() || self.paths.len() >= MAX_PATHS {
            self.everything_changed();
        } else if !self.everything {
            self.paths.insert(rel);
        }
    }

    /// A change that no path tells.
    pub fn everything_changed(&mut self) {
        self.everything = true;
        self.paths.clear();
    }

    /// What changed since the last call, and forgets it: the paths, or `None` when the read
    /// must look at the whole folder.
    pub fn take(&mut self) -> Option<BTreeSet<String>> {
        let paths = std::mem::take(&mut self.paths);
        let everything = std::mem::replace(&mut self.everything, false);
        (self.watching && !everything).then_some(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_told_only_while_a_watcher_has_seen_everything_since_the_last_read() {
        let mut changes = FolderChanges::default();
        changes.changed("a/levy.rhai".into());
        assert_eq!(changes.take(), None, "nobody watches");

        changes.watching_from_now();
        assert_eq!(
            changes.take(),
            None,
            "the read before may have missed changes"
        );
        changes.changed("a/levy.rhai".into());
        changes.changed("b".into());
        assert_eq!(
            changes.take(),
            Some(BTreeSet::from(["a/levy.rhai".to_owned(), "b".to_owned()]))
        );
        assert_eq!(changes.take(), Some(BTreeSet::new()), "taken once");

        changes.changed("a/levy.rhai".into());
        changes.changed(String::new());
        changes.changed("c".into());
        assert_eq!(changes.take(), None, "the folder itself changed");

        for i in 0..=MAX_PATHS {
            changes.changed(format!("p{i}"));
        }
        assert_eq!(changes.take(), None, "too many to look at one by one");

        changes.changed("a".into());
        changes.not_watching();
        assert_eq!(changes.take(), None);
    }
}
