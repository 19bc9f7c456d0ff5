//! Durable decision writes per second: Pintu's store against SQLite (WAL, synchronous=FULL,
//! one transaction per write) and against the disk's raw write + fsync rate, all on the same
//! disk under the harness's work dir.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pintu::store::records::DecisionRecord;
use pintu::store::{Op, Store};
use rusqlite::{Connection, TransactionBehavior};

/// Writes completed and the time they took.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub writes: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// A decision as the server logs it for a PBG levy of worked example B.
pub fn sample_decision() -> DecisionRecord {
    DecisionRecord {
        seq: 0,
        at: chrono::Utc::now(),
        permit: "pbg".to_owned(),
        kind: "levy".to_owned(),
        release: "0".repeat(64),
        input: serde_json::json!({
            "fungsi": "usaha", "kompleksitas": "tidak_sederhana", "permanensi": "permanen",
            "jumlah_lantai": 5, "luas_lantai_total": "1250.5", "kepemilikan": "badan_usaha",
            "kegiatan": "baru",
            "prasarana": [{"jenis": "pagar", "volume": "120"}, {"jenis": "parkir", "volume": "300.5"}]
        }),
        output: serde_json::json!({
            "total": "35388588", "currency": "IDR",
            "items": [
                {"code": "bangunan_gedung", "label": "Bangunan gedung 1250.5 m²", "amount": "34607588"},
                {"code": "prasarana:pagar", "label": "Pagar 120 m'", "amount": "180000"},
                {"code": "prasarana:parkir", "label": "Lapangan parkir 300.5 m²", "amount": "601000"}
            ]
        }),
        duration_us: 250,
    }
}

/// The record bytes both databases store: the decision as JSON in the store's envelope.
pub fn record_bytes(d: &DecisionRecord) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(
        &serde_json::json!({ "v": 1, "data": d }),
    )?)
}

/// `writers` concurrent tasks each appending decisions to Pintu's store until `run_for`
/// has passed (each writes at least once).
pub fn pintu_store(dir: &Path, writers: usize, run_for: Duration) -> Result<Rate> {
    let store = Store::open(dir, pintu::config::DEFAULT_MAX_COMMIT_BATCH)
        .map_err(|e| anyhow!("opening the store in {}: {e}", dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let record = sample_decision();
    let result = rt.block_on(async {
        // One warm-up write so opening costs are not counted.
        store.write(vec![Op::Decision(record.clone())]).await?;
        let start = Instant::now();
        let deadline = start + run_for;
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let store = store.clone();
            let record = record.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    store.write(vec![Op::Decision(record.clone())]).await?;
                    n += 1;
                    if Instant::now() >= deadline {
                        return Ok::<u64, pintu::store::StoreError>(n);
                    }
                }
            }));
        }
        let mut writes = 0;
        for t in tasks {
            writes += t.await.context("writer task")??;
        }
        Ok::<Rate, anyhow::Error>(Rate {
            writes,
            elapsed: start.elapsed(),
        })
    });
    store.close();
    result
}

fn sqlite_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// `writers` threads, each with its own connection, inserting one record per transaction.
pub fn sqlite(dir: &Path, writers: usize, run_for: Duration) -> Result<Rate> {
    let path = dir.join("decisions.sqlite");
    let setup = sqlite_conn(&path)?;
    setup.execute_batch(
        "CREATE TABLE IF NOT EXISTS decisions (seq INTEGER PRIMARY KEY, record BLOB NOT NULL);",
    )?;
    let bytes = Arc::new(record_bytes(&sample_decision())?);
    let start = Instant::now();
    let deadline = start + run_for;
    let handles: Vec<_> = (0..writers)
        .map(|_| {
            let path = path.clone();
            let bytes = bytes.clone();
            std::thread::spawn(move || -> Result<u64> {
                let mut conn = sqlite_conn(&path)?;
                let mut n = 0u64;
                loop {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    tx.execute(
                        "INSERT INTO decisions (record) VALUES (?1)",
                        [bytes.as_slice()],
                    )?;
                    tx.commit()?;
                    n += 1;
                    if Instant::now() >= deadline {
                        return Ok(n);
                    }
                }
            })
        })
        .collect();
    let mut writes = 0;
    for h in handles {
        writes += h
            .join()
            .map_err(|_| anyhow!("a SQLite writer thread panicked"))??;
    }
    Ok(Rate {
        writes,
        elapsed: start.elapsed(),
    })
}

/// One writer appending the record to a file and fsyncing after each write.
pub fn raw_fsync(dir: &Path, run_for: Duration) -> Result<Rate> {
    let bytes = record_bytes(&sample_decision())?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("fsync.log"))?;
    let start = Instant::now();
    let mut writes = 0u64;
    loop {
        file.write_all(&bytes)?;
        file.sync_all()?;
        writes += 1;
        if start.elapsed() >= run_for {
            break;
        }
    }
    Ok(Rate {
        writes,
        elapsed: start.elapsed(),
    })
}
