//! `pintu store check`: redb's page-by-page integrity check, then every record read back.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    catch_unwind, files, panic_message, StoreError, ACTIVATIONS, APPLICATIONS, AUDIT, DB_FILE,
    DECISIONS, DELIVERIES, EVENTS, META, PLUGIN_FILES, RELEASES, RELEASE_PLUGINS, RELEASE_SOURCES,
    RELOADS, SOURCE_FILES, TOKENS, USERS,
};

/// What the check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub file_bytes: u64,
    /// (table, records) for every table.
    pub tables: Vec<(&'static str, u64)>,
    /// `table #key: why` for every record that does not read back.
    pub unreadable: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.unreadable.is_empty()
    }
}

/// Checks `DATA/pintu.redb` (redb may repair what its own recovery can). Fails when the file is
/// missing, empty, in use, or damaged; unreadable records are listed in the report.
pub fn check(data_dir: &Path) -> Result<CheckReport, StoreError> {
    let path = data_dir.join(DB_FILE);
    let open_err = |message: String| StoreError::Open {
        path: path.clone(),
        message,
    };
    let meta = std::fs::metadata(&path).map_err(|e| open_err(e.to_string()))?;
    files::refuse_empty_db(&path)?;
    let opened = catch_unwind(|| {
        Database::builder()
            .set_check_integrity_on_open(true)
            .open(&path)
    });
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(StoreError::InUse { path: path.clone() })
        }
        Ok(Err(e)) => return Err(open_err(format!("the file is damaged: {e}"))),
        Err(panic) => {
            return Err(open_err(format!(
                "the file is damaged: {}",
                panic_message(&panic)
            )))
        }
    };
    let mut report = CheckReport {
        file_bytes: meta.len(),
        ..CheckReport::default()
    };
    let read = catch_unwind(std::panic::AssertUnwindSafe(|| read_all(&db, &mut report)));
    match read {
        Ok(result) => result?,
        Err(panic) => {
            return Err(open_err(format!(
                "the file is damaged: {}",
                panic_message(&panic)
            )))
        }
    }
    Ok(report)
}

fn read_all(db: &Database, report: &mut CheckReport) -> Result<(), StoreError> {
    let txn = db.begin_read()?;
    for (name, table) in [
        ("meta", META),
        ("releases", RELEASES),
        ("release_sources", RELEASE_SOURCES),
        ("source_files", SOURCE_FILES),
        ("source_trees", super::SOURCE_TREES),
        ("release_plugins", RELEASE_PLUGINS),
        ("release_passes", super::RELEASE_PASSES),
        ("tokens", TOKENS),
        ("users", USERS),
    ] {
        let t = match txn.open_table(table) {
            Ok(t) => t,
            // A file last opened by a build without this table: nothing to read.
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        report.tables.push((name, t.len()?));
        for entry in t.iter()? {
            let (k, v) = entry?;
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(v.value()) {
                report
                    .unreadable
                    .push(format!("{name} `{}`: {e}", k.value()));
            }
        }
    }
    // Connector files are raw bytes: each must still match the hash it is stored under.
    match txn.open_table(PLUGIN_FILES) {
        Ok(t) => {
            report.tables.push(("plugin_files", t.len()?));
            for entry in t.iter()? {
                let (k, v) = entry?;
                if super::plugins::plugin_key(v.value()) != k.value() {
                    report.unreadable.push(format!(
                        "plugin_files `{}`: the bytes do not match their hash",
                        k.value()
                    ));
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let seq_tables: [(&'static str, TableDefinition<u64, &[u8]>); 7] = [
        ("activations", ACTIVATIONS),
        ("reloads", RELOADS),
        ("decisions", DECISIONS),
        ("audit", AUDIT),
        ("applications", APPLICATIONS),
        ("events", EVENTS),
        ("deliveries", DELIVERIES),
    ];
    for (name, table) in seq_tables {
        let t = match txn.open_table(table) {
            Ok(t) => t,
            // A file last opened by a build without this table: nothing to read.
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        report.tables.push((name, t.len()?));
        for entry in t.iter()? {
            let (k, v) = entry?;
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(v.value()) {
                report
                    .unreadable
                    .push(format!("{name} #{}: {e}", k.value()));
            }
        }
    }
    Ok(())
}
