//! The servers under measurement, as real processes on an ephemeral loopback port: `pintu
//! serve` (the binary cargo builds for this harness's profile, or `PINTU_BIN`) and the native
//! endpoint (this harness run again with `--serve-native`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

/// How long a server may take to say where it listens (a 1,000-type tree builds first).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a server may take to exit after SIGTERM before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines kept per server, to show when something goes wrong.
const LOG_LINES: usize = 200;

/// The repository root (this crate lives in `bench/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `pintu` binary: `PINTU_BIN` if set, else the one cargo builds for this harness's
/// profile (release for `cargo run --release`), at the path cargo reports for it, so a stale
/// binary of another profile is never measured.
pub fn pintu_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PINTU_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("PINTU_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let out = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "pintu",
            "--bin",
            "pintu",
            "--profile",
            profile,
        ])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build -p pintu (or set PINTU_BIN)")?;
    if !out.status.success() {
        bail!(
            "cargo build -p pintu --profile {profile} failed: {}",
            out.status
        );
    }
    let mut exe = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Json>(line) else {
            continue;
        };
        if msg.get("reason").and_then(Json::as_str) == Some("compiler-artifact")
            && msg.pointer("/target/name").and_then(Json::as_str) == Some("pintu")
        {
            if let Some(path) = msg.get("executable").and_then(Json::as_str) {
                exe = Some(PathBuf::from(path));
            }
        }
    }
    let exe = exe.ok_or_else(|| anyhow!("cargo built pintu but reported no executable"))?;
    if !exe.is_file() {
        bail!("cargo reported {}, which is not a file", exe.display());
    }
    Ok(exe)
}

/// `pintu serve` on `rules` with a fresh `data` folder and the harness's `config` file.
pub fn pintu_serve(bin: &Path, config: &Path, rules: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--rules")
        .arg(rules)
        .arg("--data")
        .arg(data)
        .args(["--bind", "127.0.0.1:0"]);
    if let Some(dir) = data.parent() {
        cmd.current_dir(dir);
    }
    cmd
}

/// The native endpoint: this harness, serving the plain-Rust levy of `rules/pbg`.
pub fn native_serve(rules: &Path, data: &Path) -> Result<Command> {
    let mut cmd = Command::new(std::env::current_exe().context("locating pintu-bench")?);
    cmd.arg("--rules")
        .arg(rules)
        .arg("--serve-native")
        .arg(data);
    Ok(cmd)
}

/// A running server process; stopped with SIGTERM (then killed) when dropped.
pub struct Proc {
    child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd` and waits until it logs `listening on http://ADDR`.
    pub fn spawn(mut cmd: Command, what: &str) -> Result<Self> {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("{what}: stderr not piped"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                if let Ok(mut log) = sink.lock() {
                    if log.len() >= LOG_LINES {
                        log.remove(0);
                    }
                    log.push(line);
                }
            }
        });
        let mut proc = Self {
            child,
            base: String::new(),
            log,
        };
        match rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(addr) => proc.base = format!("http://{addr}"),
            Err(_) => bail!(
                "{what} did not start listening within {LISTEN_TIMEOUT:?}; its log:\n{}",
                proc.log_tail()
            ),
        }
        Ok(proc)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now (`VmRSS` of `/proc/<pid>/status`), in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .context("reading /proc/<pid>/status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{}/status", self.pid()))
    }

    pub fn log_tail(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let started = Instant::now();
        while started.elapsed() < EXIT_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /health`: (HTTP status, `status` field, `release` field).
pub async fn health(
    client: &reqwest::Client,
    base: &str,
) -> Result<(u16, String, Option<String>, Option<String>)> {
    let resp = client.get(format!("{base}/health")).send().await?;
    let code = resp.status().as_u16();
    let body: Json = resp.json().await?;
    let field = |k: &str| body.get(k).and_then(Json::as_str).map(str::to_owned);
    Ok((
        code,
        field("status").unwrap_or_default(),
        field("release"),
        field("reason"),
    ))
}

/// Polls `/health` every `every` until it answers 200 `ok` with a release other than `not`;
/// returns that release. A `degraded` answer (the change was rejected) is an error.
pub async fn wait_for_release(
    client: &reqwest::Client,
    base: &str,
    not: Option<&str>,
    every: Duration,
    timeout: Duration,
) -> Result<String> {
    let started = Instant::now();
    loop {
        if let Ok((200, status, Some(release), reason)) = health(client, base).await {
            if status == "degraded" && not.is_some_and(|n| n == release) {
                bail!("the rules were rejected: {}", reason.unwrap_or_default());
            }
            if status == "ok" && not != Some(release.as_str()) {
                return Ok(release);
            }
        }
        if started.elapsed() > timeout {
            bail!("{base}/health did not report a new release within {timeout:?}");
        }
        tokio::time::sleep(every).await;
    }
}
