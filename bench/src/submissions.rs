//! Durable submissions per second: `POST /v1/applications` of a PBG application (validated by
//! the rules, registration number, application, index rows and event in one durable commit) at
//! 1, 16 and 64 concurrent clients against the real `pintu serve`, next to SQLite doing the same
//! inserts: one transaction per submission that increments the registration counter, inserts
//! the application as Pintu answered it (with indexed columns for the list filters) and appends
//! its event, WAL with `synchronous=FULL`, one connection per writer thread.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::{Connection, TransactionBehavior};
use serde_json::{json, Value as Json};

use crate::durable::Rate;
use crate::server::{self, Proc};
use crate::{Bench, Row};

pub const BASELINE: &str =
    "SQLite WAL, synchronous=FULL: counter + application + event per transaction";

/// Worked example A (a 180 m² house), the data of a passing pbg fixture.
fn body(n: u64) -> Json {
    json!({
        "permit": "pbg",
        "kind": "baru",
        "applicant": {"name": format!("Pemohon {n}"), "nik": "1872012505800001"},
        "data": {
            "fungsi": "hunian_tidak_sederhana", "kompleksitas": "tidak_sederhana",
            "permanensi": "permanen", "jumlah_lantai": 2, "luas_lantai_total": 180,
            "kepemilikan": "perorangan", "kegiatan": "baru"
        }
    })
}

/// What the clients of one level saw.
#[derive(Default)]
struct Submitted {
    created: u64,
    non_2xx: u64,
    errors: u64,
    elapsed: Duration,
}

impl Submitted {
    fn per_sec(&self) -> f64 {
        self.created as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// `clients` concurrent clients, each on its own connection, submitting until `run_for` has
/// passed. Only 201 answers with a registration number count.
async fn submit(base: &str, token: &str, clients: usize, run_for: Duration) -> Result<Submitted> {
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = crate::load::client()?;
        let (url, token) = (format!("{base}/v1/applications"), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut s = Submitted::default();
            let mut n = (c as u64) << 32;
            while Instant::now() < deadline {
                n += 1;
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body(n))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => match r.json::<Json>().await {
                        Ok(v) if v.get("registration_number").is_some_and(Json::is_string) => {
                            s.created += 1
                        }
                        _ => s.errors += 1,
                    },
                    Ok(_) => s.non_2xx += 1,
                    Err(_) => {
                        s.errors += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            s
        }));
    }
    let mut all = Submitted::default();
    for t in tasks {
        let s = t.await?;
        all.created += s.created;
        all.non_2xx += s.non_2xx;
        all.errors += s.errors;
    }
    all.elapsed = start.elapsed();
    Ok(all)
}

fn sqlite_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// `writers` threads inserting `app` (the bytes of an application as Pintu answered it) the way
/// a submission stores it, one transaction each, until `run_for` has passed.
pub fn sqlite(dir: &Path, app: &[u8], writers: usize, run_for: Duration) -> Result<Rate> {
    let path = dir.join("applications.sqlite");
    let setup = sqlite_conn(&path)?;
    setup.execute_batch(
        "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, n INTEGER NOT NULL);
         INSERT OR IGNORE INTO counters VALUES ('registration/pbg/default/2026', 0);
         CREATE TABLE IF NOT EXISTS applications (
             seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, permit TEXT NOT NULL,
             status TEXT NOT NULL, step TEXT, kind TEXT NOT NULL, submitted_on TEXT NOT NULL,
             registration_number TEXT NOT NULL, record BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS by_permit ON applications (permit, seq);
         CREATE INDEX IF NOT EXISTS by_status ON applications (status, seq);
         CREATE INDEX IF NOT EXISTS by_step ON applications (step, seq);
         CREATE INDEX IF NOT EXISTS by_kind ON applications (kind, seq);
         CREATE INDEX IF NOT EXISTS by_submitted ON applications (submitted_on, seq);
         CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, type TEXT NOT NULL,
             application TEXT NOT NULL, data BLOB NOT NULL);",
    )?;
    let app = Arc::new(app.to_vec());
    let start = Instant::now();
    let deadline = start + run_for;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (path, app) = (path.clone(), app.clone());
            std::thread::spawn(move || -> Result<u64> {
                let mut conn = sqlite_conn(&path)?;
                let mut n = 0u64;
                loop {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let seq: i64 = tx.query_row(
                        "UPDATE counters SET n = n + 1 WHERE key = 'registration/pbg/default/2026' RETURNING n",
                        [],
                        |r| r.get(0),
                    )?;
                    let number = format!("REG/PBG/2026/{seq:05}");
                    let id = format!("APP-{w}-{n}");
                    tx.execute(
                        "INSERT INTO applications (id, permit, status, step, kind, submitted_on,
                             registration_number, record)
                         VALUES (?1, 'pbg', 'in_progress', 'pendaftaran', 'baru', '2026-11-30', ?2, ?3)",
                        rusqlite::params![id, number, app.as_slice()],
                    )?;
                    tx.execute(
                        "INSERT INTO events (type, application, data) VALUES ('application.submitted', ?1, ?2)",
                        rusqlite::params![
                            id,
                            format!(r#"{{"permit":"pbg","kind":"baru","registration_number":"{number}","version":1}}"#)
                        ],
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

pub fn rows(bench: &Bench) -> Result<Vec<Row>> {
    let work = bench.temp_dir()?;
    let rules = work.path().join("rules");
    crate::generate::copy_tree(&bench.args.rules, &rules)?;
    let data = work.path().join("pintu-data");
    let pintu = Proc::spawn(
        server::pintu_serve(&bench.bin, &bench.config, &rules, &data),
        "pintu serve",
    )?;
    let (warm, run_for) = if bench.args.quick {
        (Duration::from_millis(100), Duration::from_millis(300))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    // The first start writes the admin token; an admin may submit.
    let token_path = data.join("admin.token");
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?
        .trim()
        .to_owned();
    let app = bench.rt.block_on(async {
        let client = crate::load::client()?;
        server::wait_for_release(
            &client,
            &pintu.base,
            None,
            Duration::from_millis(5),
            Duration::from_secs(600),
        )
        .await?;
        let resp = client
            .post(format!("{}/v1/applications", pintu.base))
            .bearer_auth(&token)
            .json(&body(0))
            .send()
            .await?;
        let status = resp.status();
        let answer: Json = resp.json().await?;
        if status.as_u16() != 201 {
            bail!("POST /v1/applications answered {status}: {answer}");
        }
        Ok(serde_json::to_vec(&answer)?)
    })?;
    let mut rows = Vec::new();
    for clients in crate::http::LEVELS {
        let p = bench.rt.block_on(async {
            submit(&pintu.base, &token, clients, warm).await?;
            submit(&pintu.base, &token, clients, run_for).await
        })?;
        if p.created == 0 {
            bail!(
                "no submission succeeded at {clients} clients ({} non-2xx, {} errors); pintu log:\n{}",
                p.non_2xx,
                p.errors,
                pintu.log_tail()
            );
        }
        let sd = bench.temp_dir()?;
        let s = sqlite(sd.path(), &app, clients, run_for)?;
        rows.push(Row {
            what: format!("durable submissions (POST /v1/applications), {clients} client(s)"),
            pintu: format!(
                "{:.0} /s ({} created, {} non-2xx, {} errors)",
                p.per_sec(),
                p.created,
                p.non_2xx,
                p.errors
            ),
            baseline_name: BASELINE.into(),
            baseline: format!("{:.0} /s ({} writes)", s.per_sec(), s.writes),
            ratio: format!("{:.2}×", p.per_sec() / s.per_sec().max(f64::MIN_POSITIVE)),
        });
    }
    Ok(rows)
}
