//! Start-up and reload with a given rules tree: the real `pintu serve` started on a fresh data
//! folder (time until `/health` reports an active release, and its resident memory then), then
//! editor-style saves while clients call the levy (time from each save until `/health` reports
//! the release the save made, and the requests that failed meanwhile); then the same server
//! restarted on the same data folder and tree.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use toml_edit::{value, DocumentMut};

use crate::load::{self, Load, Request};
use crate::server::{self, Proc};
use crate::{case_b, Bench};

/// How often `/health` is asked while waiting for a release.
const POLL: Duration = Duration::from_millis(2);
/// Longest wait for a start or a reload before the harness gives up.
const WAIT: Duration = Duration::from_secs(600);

pub struct Scale {
    pub start: Duration,
    /// Stop, then start again on the same data and the tree as the last save left it: the
    /// release passed its fixtures under the same binary and settings, so they do not run.
    pub restart: Duration,
    pub rss_kib: u64,
    /// Save → served, one per save.
    pub reloads: Vec<Duration>,
    /// What the clients calling the levy during the saves saw.
    pub load: Load,
}

/// Saves `permit.toml` of `dir` the way editors do: the whole file written to a temporary
/// sibling, then renamed over it. The permit's name changes, so the release id changes while
/// every fixture still passes.
fn save(dir: &Path, base_name: &str, n: usize) -> Result<()> {
    let path = dir.join("permit.toml");
    let mut doc: DocumentMut = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .parse()?;
    doc.insert("name", value(format!("{base_name} (simpan {n})")));
    let tmp = dir.join("permit.tmp");
    std::fs::write(&tmp, doc.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming over {}", path.display()))?;
    Ok(())
}

/// Starts `pintu serve` on `tree` (permit `pbg_id` is a copy of pbg whose worked example B
/// totals `total`), then saves `saves` times while `clients` clients call its levy.
pub fn measure(
    bench: &Bench,
    tree: &Path,
    pbg_id: &str,
    total: String,
    saves: usize,
    clients: usize,
) -> Result<Scale> {
    let work = bench.temp_dir()?;
    let serve = || server::pintu_serve(&bench.bin, &bench.config, tree, &work.path().join("data"));
    let cmd = serve();
    bench.rt.block_on(async {
        let client = load::client()?;
        let started = Instant::now();
        let proc = Proc::spawn(cmd, "pintu serve")?;
        let mut release = server::wait_for_release(&client, &proc.base, None, POLL, WAIT)
            .await
            .with_context(|| format!("starting on {}:\n{}", tree.display(), proc.log_tail()))?;
        let start = started.elapsed();
        let rss_kib = proc.rss_kib()?;

        let req = Request {
            url: format!("{}/v1/permits/{pbg_id}/levy", proc.base),
            body: serde_json::json!({ "data": case_b() }).to_string(),
            total: Some(total),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let clients_task = {
            let stop = stop.clone();
            tokio::spawn(async move { load::run(&req, clients, WAIT * 10, stop).await })
        };
        let dir = tree.join(pbg_id);
        let base_name = std::fs::read_to_string(dir.join("permit.toml"))?
            .parse::<DocumentMut>()?
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| anyhow!("{pbg_id}/permit.toml has no name"))?
            .to_owned();
        let mut reloads = Vec::with_capacity(saves);
        let outcome: Result<()> = async {
            for n in 1..=saves {
                save(&dir, &base_name, n)?;
                let saved = Instant::now();
                release = server::wait_for_release(&client, &proc.base, Some(&release), POLL, WAIT)
                    .await
                    .with_context(|| format!("save {n}:\n{}", proc.log_tail()))?;
                reloads.push(saved.elapsed());
            }
            Ok(())
        }
        .await;
        stop.store(true, Ordering::Relaxed);
        let load = clients_task.await??;
        outcome?;
        // Dropped: SIGTERM, and waited for, so the data folder is free for the next server.
        drop(proc);
        let started = Instant::now();
        let proc = Proc::spawn(serve(), "pintu serve (restart)")?;
        server::wait_for_release(&client, &proc.base, None, POLL, WAIT)
            .await
            .with_context(|| format!("restarting on {}:\n{}", tree.display(), proc.log_tail()))?;
        let restart = started.elapsed();
        Ok(Scale {
            start,
            restart,
            rss_kib,
            reloads,
            load,
        })
    })
}
