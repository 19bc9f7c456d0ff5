//! Backward compatibility of the database: `tests/data/store-v<N>.redb` was written by the build
//! whose schema version was N, and every later build must open it (migrating it if needed) and
//! read back, through the public store API, everything that was written.
//!
//! When the schema version is bumped: add the migration (`store::schema`), keep the old fixture
//! and its check, then write the new version's fixture with
//! `cargo test -p pintu --test store_compat -- --ignored write_fixture` and add its check.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: failing loudly is the point"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use pintu::diagnostic::Diagnostic;
use pintu::store::records::{
    ActivationRecord, AuditRecord, DecisionRecord, PinRecord, ReleaseRecord, ReloadRecord,
    TokenRecord,
};
use pintu::store::{Op, Store, DB_FILE, SCHEMA_VERSION};
use serde_json::json;

const FIRST: &str = "1a2b3c4d5e6f7081";
const SECOND: &str = "9f8e7d6c5b4a3921";
const ADMIN_HASH: &str = "5f1c8a0e4b7d29c3a6e1f08b7d3c5a9e2f4b6d8a0c1e3f5a7b9d2c4e6f8a0b1c";
const CLERK_HASH: &str = "0a9b8c7d6e5f40312a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091";

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("store-v{version}.redb"))
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 9, minute, 0)
        .single()
        .unwrap()
}

/// The texts as a release holds them.
fn shared(files: BTreeMap<String, String>) -> BTreeMap<String, std::sync::Arc<str>> {
    files.into_iter().map(|(p, t)| (p, t.into())).collect()
}

fn sources(levy_rate: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "imb/permit.toml".to_owned(),
            "id = \"imb\"\nname = \"Izin Mendirikan Bangunan\"\n\n[fields.luas_m2]\ntype = \"decimal\"\nmin = 1\n"
                .to_owned(),
        ),
        (
            "imb/levy.rhai".to_owned(),
            format!("item(\"retribusi\", input.luas_m2 * {levy_rate})\n"),
        ),
        (
            "imb/fixtures/kecil.json".to_owned(),
            "{\"input\": {\"luas_m2\": \"10\"}}\n".to_owned(),
        ),
    ])
}

fn release(id: &str, minute: u32) -> ReleaseRecord {
    ReleaseRecord {
        id: id.to_owned(),
        created_at: at(minute),
        created_by: "reload".to_owned(),
        permits: vec!["imb".to_owned()],
        fixtures: 1,
        files: 3,
    }
}

fn activation(release: &str, minute: u32, by: &str, reason: &str) -> ActivationRecord {
    ActivationRecord {
        release: release.to_owned(),
        at: at(minute),
        by: by.to_owned(),
        reason: reason.to_owned(),
    }
}

fn reloads() -> Vec<ReloadRecord> {
    let mut rejected_diagnostic = Diagnostic::new(
        "imb/fixtures/kecil.json",
        1,
        1,
        "fixture `kecil`: the levy differs",
    );
    rejected_diagnostic.expected = Some(Box::new(json!({"total": "25000"})));
    rejected_diagnostic.actual = Some(Box::new(json!({"total": "30000"})));
    vec![
        ReloadRecord {
            seq: 1,
            at: at(0),
            trigger: "start".to_owned(),
            release: FIRST.to_owned(),
            accepted: true,
            permits: 1,
            fixtures_passed: 1,
            fixtures_failed: 0,
            fixtures_reused: 0,
            passed_before: false,
            duration_ms: 12,
            diagnostics: vec![],
            unchanged: false,
            active: Some(FIRST.to_owned()),
            note: String::new(),
        },
        ReloadRecord {
            seq: 2,
            at: at(5),
            trigger: "watch".to_owned(),
            release: "77aa77aa77aa77aa".to_owned(),
            accepted: false,
            permits: 1,
            fixtures_passed: 0,
            fixtures_failed: 1,
            fixtures_reused: 0,
            passed_before: false,
            duration_ms: 9,
            diagnostics: vec![
                rejected_diagnostic,
                Diagnostic::new("imb/permit.toml", 5, 1, "unknown field type `decimall`"),
            ],
            unchanged: false,
            active: Some(FIRST.to_owned()),
            note: "the folder fails; the active release keeps serving".to_owned(),
        },
        ReloadRecord {
            seq: 3,
            at: at(10),
            trigger: "admin".to_owned(),
            release: SECOND.to_owned(),
            accepted: true,
            permits: 1,
            fixtures_passed: 1,
            fixtures_failed: 0,
            fixtures_reused: 0,
            passed_before: false,
            duration_ms: 15,
            diagnostics: vec![],
            unchanged: false,
            active: Some(SECOND.to_owned()),
            note: String::new(),
        },
        ReloadRecord {
            seq: 4,
            at: at(20),
            trigger: "watch".to_owned(),
            release: SECOND.to_owned(),
            accepted: true,
            permits: 1,
            fixtures_passed: 0,
            fixtures_failed: 0,
            fixtures_reused: 0,
            passed_before: false,
            duration_ms: 0,
            diagnostics: vec![],
            unchanged: true,
            active: Some(FIRST.to_owned()),
            note: "pinned by an admin".to_owned(),
        },
    ]
}

fn decisions() -> Vec<DecisionRecord> {
    vec![
        DecisionRecord {
            seq: 1,
            at: at(1),
            permit: "imb".to_owned(),
            kind: "levy".to_owned(),
            release: FIRST.to_owned(),
            input: json!({"luas_m2": "120.50"}),
            output: json!({"items": [{"name": "retribusi", "amount": "301250.00"}], "total": "301250.00"}),
            duration_us: 840,
        },
        DecisionRecord {
            seq: 2,
            at: at(2),
            permit: "sip".to_owned(),
            kind: "validate".to_owned(),
            release: FIRST.to_owned(),
            input: json!({"nik": "12"}),
            output: json!({"valid": false, "errors": [{"field": "nik", "message": "must be 16 digits"}]}),
            duration_us: 310,
        },
        DecisionRecord {
            seq: 3,
            at: at(11),
            permit: "imb".to_owned(),
            kind: "levy".to_owned(),
            release: SECOND.to_owned(),
            input: json!({"truncated": true, "bytes": 40000, "excerpt": "{\"luas_m2\":\"1"}),
            output: json!({"error": "script_error", "message": "imb/levy.rhai:1:1: boom"}),
            duration_us: 1200,
        },
    ]
}

fn tokens() -> Vec<(String, TokenRecord)> {
    vec![
        (
            ADMIN_HASH.to_owned(),
            TokenRecord {
                id: ADMIN_HASH[..12].to_owned(),
                role: "admin".to_owned(),
                label: "first admin, created at start".to_owned(),
                created_at: at(0),
                user: None,
            },
        ),
        (
            CLERK_HASH.to_owned(),
            TokenRecord {
                id: CLERK_HASH[..12].to_owned(),
                role: "front_office".to_owned(),
                label: "loket 1".to_owned(),
                created_at: at(3),
                user: None,
            },
        ),
    ]
}

fn audit() -> Vec<AuditRecord> {
    vec![
        AuditRecord {
            seq: 1,
            at: at(3),
            actor: ADMIN_HASH[..12].to_owned(),
            action: "create_token".to_owned(),
            detail: json!({"id": &CLERK_HASH[..12], "role": "front_office", "label": "loket 1"}),
        },
        AuditRecord {
            seq: 2,
            at: at(15),
            actor: ADMIN_HASH[..12].to_owned(),
            action: "activate".to_owned(),
            detail: json!({"release": FIRST}),
        },
    ]
}

/// What the version-1 fixture holds, written the way the server writes it: one operation list
/// per event.
fn v1_writes() -> Vec<Vec<Op>> {
    let reloads = reloads();
    let decisions = decisions();
    let audit = audit();
    let tokens = tokens();
    let [r1, r2, r3, r4] = <[ReloadRecord; 4]>::try_from(reloads).unwrap();
    let [d1, d2, d3] = <[DecisionRecord; 3]>::try_from(decisions).unwrap();
    let [a1, a2] = <[AuditRecord; 2]>::try_from(audit).unwrap();
    let token = |(hash, record): &(String, TokenRecord)| Op::Token {
        hash: hash.clone(),
        record: record.clone(),
    };
    vec![
        vec![
            Op::Release {
                record: release(FIRST, 0),
                sources: shared(sources("2500")),
            },
            Op::Activate(activation(FIRST, 0, "start", "folder")),
            Op::Reload(r1),
            token(&tokens[0]),
        ],
        vec![Op::Decision(d1)],
        vec![Op::Decision(d2)],
        vec![token(&tokens[1]), Op::Audit(a1)],
        vec![Op::Reload(r2)],
        vec![
            Op::Release {
                record: release(SECOND, 10),
                sources: shared(sources("2600")),
            },
            Op::Activate(activation(SECOND, 10, "admin", "reload")),
            Op::Reload(r3),
        ],
        vec![Op::Decision(d3)],
        vec![
            Op::Activate(activation(FIRST, 15, &ADMIN_HASH[..12], "rollback")),
            Op::Pin(Some(PinRecord {
                release: FIRST.to_owned(),
                folder: SECOND.to_owned(),
            })),
            Op::Audit(a2),
        ],
        vec![Op::Reload(r4)],
    ]
}

/// Opens a copy of the fixture (opening migrates in place; the committed file stays as it is).
fn open_copy(version: u32) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(version), dir.path().join(DB_FILE)).unwrap();
    let store = Store::open(dir.path(), 64).unwrap();
    (dir, store)
}

fn records<T: Clone>(page: &pintu::store::Page<T>) -> Vec<T> {
    page.items
        .iter()
        .map(|item| item.record().cloned().expect("every record reads back"))
        .collect()
}

fn rev<T>(mut v: Vec<T>) -> Vec<T> {
    v.reverse();
    v
}

#[test]
fn the_fixture_of_the_current_schema_exists() {
    let path = fixture(SCHEMA_VERSION);
    assert!(
        path.exists(),
        "{} is missing: write it with `cargo test -p pintu --test store_compat -- --ignored \
         write_fixture` and add its check",
        path.display()
    );
}

#[test]
fn a_version_1_database_opens_and_reads_back_everything() {
    reads_back_everything(1);
}

/// Version 2 keeps each file body once (`source_files`); version 1's are moved there on open.
#[test]
fn a_version_2_database_opens_and_reads_back_everything() {
    reads_back_everything(2);
}

/// Version 3 lists each release's files by top-level folder (`source_trees`); the lists of
/// versions 1 and 2 are regrouped on open.
#[test]
fn a_version_3_database_opens_and_reads_back_everything() {
    reads_back_everything(3);
}

/// Every fixture holds the same writes (`v1_writes`), each in its version's layout.
fn reads_back_everything(version: u32) {
    let (dir, store) = open_copy(version);

    // meta
    assert_eq!(store.active_release().unwrap().as_deref(), Some(FIRST));
    assert_eq!(
        store.pin().unwrap(),
        Some(PinRecord {
            release: FIRST.to_owned(),
            folder: SECOND.to_owned(),
        })
    );
    assert!(store.decision_bytes().unwrap() > 0);

    // releases and their sources
    assert_eq!(
        store.releases().unwrap(),
        vec![release(SECOND, 10), release(FIRST, 0)]
    );
    assert_eq!(store.release(FIRST).unwrap(), Some(release(FIRST, 0)));
    assert_eq!(store.release_sources(FIRST).unwrap(), Some(sources("2500")));
    assert_eq!(
        store.release_sources(SECOND).unwrap(),
        Some(sources("2600"))
    );

    // activations
    assert_eq!(
        records(&store.activations(50, None).unwrap()),
        vec![
            activation(FIRST, 15, &ADMIN_HASH[..12], "rollback"),
            activation(SECOND, 10, "admin", "reload"),
            activation(FIRST, 0, "start", "folder"),
        ]
    );

    // reloads, with their diagnostics
    assert_eq!(records(&store.reloads(50, None).unwrap()), rev(reloads()));

    // decisions, and the index by permit
    assert_eq!(store.decision_count().unwrap(), 3);
    assert_eq!(
        records(&store.decisions(None, 50, None).unwrap()),
        rev(decisions())
    );
    let imb: Vec<u64> = records(&store.decisions(Some("imb"), 50, None).unwrap())
        .iter()
        .map(|d| d.seq)
        .collect();
    assert_eq!(imb, [3, 1]);
    let sip = records(&store.decisions(Some("sip"), 50, None).unwrap());
    assert_eq!(sip, vec![decisions()[1].clone()]);

    // tokens
    let mut stored = store.tokens().unwrap();
    stored.sort_by_key(|t| t.created_at);
    let expected: Vec<TokenRecord> = tokens().into_iter().map(|(_, r)| r).collect();
    assert_eq!(stored, expected);
    for (hash, record) in tokens() {
        assert_eq!(store.token(&hash).unwrap(), Some(record.clone()));
        assert_eq!(store.token_by_id(&record.id).unwrap(), Some((hash, record)));
    }

    // audit
    assert_eq!(records(&store.audit(50, None).unwrap()), rev(audit()));

    // It keeps working: the next records follow the stored ones.
    let seqs = store
        .write_blocking(vec![Op::Decision(decisions()[0].clone())])
        .unwrap();
    assert_eq!(seqs, [4]);
    store.close();
    drop(store);

    // And the offline check reads every table of the migrated file.
    let report = pintu::store::check(dir.path()).unwrap();
    assert!(report.ok(), "{:?}", report.unreadable);
    let count = |table: &str| {
        report
            .tables
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, n)| *n)
    };
    assert_eq!(count("releases"), Some(2));
    assert_eq!(count("release_sources"), Some(2));
    // The two releases differ in one file of three: four bodies, each stored once.
    assert_eq!(count("source_files"), Some(4));
    // All three files are in one folder, `imb`: one tree per release.
    assert_eq!(count("source_trees"), Some(2));
    assert_eq!(count("activations"), Some(3));
    assert_eq!(count("reloads"), Some(4));
    assert_eq!(count("decisions"), Some(4));
    assert_eq!(count("tokens"), Some(2));
    assert_eq!(count("audit"), Some(2));
}

/// Writes the fixture of the current schema version. Run on purpose only, once per version; it
/// refuses to overwrite a committed fixture.
#[test]
#[ignore = "writes tests/data/store-v<N>.redb for a new schema version"]
fn write_fixture() {
    let path = fixture(SCHEMA_VERSION);
    assert!(
        !path.exists(),
        "{} exists: a committed fixture is never rewritten",
        path.display()
    );
    // Versions 2 and 3 changed how sources are kept, not what is written: the same writes.
    assert_eq!(
        SCHEMA_VERSION, 3,
        "write the writes of the new version here"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 64).unwrap();
    for ops in v1_writes() {
        store.write_blocking(ops).unwrap();
    }
    store.close();
    drop(store);
    // Compacting leaves a file of tens of KB instead of redb's preallocated regions.
    let mut db = redb::Database::open(dir.path().join(DB_FILE)).unwrap();
    while db.compact().unwrap() {}
    drop(db);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(dir.path().join(DB_FILE), &path).unwrap();
    println!(
        "wrote {} ({} bytes)",
        path.display(),
        std::fs::metadata(&path).unwrap().len()
    );
}
