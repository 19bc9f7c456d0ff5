#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test harness: failing loudly is the point"
)]

//! Harness for the end-to-end suites: runs the real `pintu` binary on an ephemeral port with its
//! own rules and data folders, and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of the `pintu` binary, built once per test run so the suites always test current code.
pub fn pintu_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "pintu", "--bin", "pintu"])
            .current_dir(repo_root())
            .status()
            .expect("cargo build of pintu runs");
        assert!(status.success(), "building pintu failed");
        // The test executable sits in target/<profile>/deps; the binary in target/<profile>.
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
        profile_dir.join("pintu")
    })
    .clone()
}

/// Runs `pintu` with `args` to completion; returns (exit code, stdout, stderr).
pub fn run_pintu(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(pintu_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("pintu runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `files` (relative path → contents) under `root`, creating folders.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        write_file(&root.join(path), text);
    }
}

/// Replaces a file the way editors do: write a temporary sibling, then rename it over.
pub fn write_file(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// Copies a folder recursively (used to give each server its own copy of `rules/`).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A running `pintu serve`.
pub struct Server {
    child: Child,
    pub base: String,
    pub admin_token: String,
    pub rules: PathBuf,
    pub data: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
}

impl Server {
    /// Starts `pintu serve` and waits until it listens (a release need not be active).
    pub fn start(rules: &Path, data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(pintu_bin())
            .arg("serve")
            .arg("--rules")
            .arg(rules)
            .arg("--data")
            .arg(data)
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pintu serve starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    log.lock().expect("log").join("\n")
                );
            }
        };
        let admin_token = std::fs::read_to_string(data.join("admin.token"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            child,
            base: format!("http://{addr}"),
            admin_token,
            rules: rules.to_owned(),
            data: data.to_owned(),
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        into_json(r).await
    }

    /// GET with `token` as the bearer.
    pub async fn get_as(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        into_json(r).await
    }

    /// POST of a JSON body with `token` as the bearer.
    pub async fn post_as(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        into_json(r).await
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.get_as(path, &self.admin_token).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_as(path, &self.admin_token, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        into_json(r).await
    }

    /// The id of the release being served, if any.
    pub async fn release(&self) -> Option<String> {
        let (_, v) = self.get("/health").await;
        v["release"].as_str().map(str::to_owned)
    }

    /// Polls until the served release differs from `old`; returns it and how long it took.
    pub async fn wait_for_new_release(
        &self,
        old: Option<&str>,
        timeout: Duration,
    ) -> (String, Duration) {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(r) = self.release().await {
                if Some(r.as_str()) != old {
                    return (r, started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no new release within {timeout:?}; log:\n{}", self.log());
    }

    /// Polls `/admin/reloads` until there are at least `n` records; returns them, newest first.
    pub async fn wait_for_reloads(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let (_, v) = self.admin_get("/admin/reloads").await;
            let list = v["reloads"].as_array().cloned().unwrap_or_default();
            if list.len() >= n {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "fewer than {n} reloads within {timeout:?}; log:\n{}",
            self.log()
        );
    }

    /// SIGTERM, then waits for a clean exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn into_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A tiny rules tree of one permit type `uji` whose levy is `x × rate`, for reload tests.
pub fn uji_tree(rate: &str) -> Vec<(String, String)> {
    vec![
        (
            "uji/permit.toml".into(),
            format!(
                "name = \"Izin Uji\"\n\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\ngreater_than = \"0\"\n\n[params]\nrate = \"{rate}\"\n"
            ),
        ),
        ("uji/levy.rhai".into(), UJI_LEVY.into()),
        (
            "uji/tests/positif.json".into(),
            r#"{"data": {"x": "1"}, "expect": {"valid": true}}"#.into(),
        ),
        (
            "uji/tests/nol.json".into(),
            r#"{"data": {"x": "0"}, "expect": {"valid": false, "errors": ["x"]}}"#.into(),
        ),
    ]
}

pub const UJI_LEVY: &str = r#"fn levy(data, params) {
    let amount = data.x * decimal(params.rate);
    #{ items: [#{ code: "uji", label: "Retribusi uji", amount: amount }], trace: #{ rate: params.rate } }
}
"#;

/// A temp folder whose `rules/` holds the `uji` permit at `rate`, and a server started on it
/// with `data/` beside; `server.rules` and `server.data` name the two folders.
pub fn uji_server(rate: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules");
    write_uji(&rules, rate);
    let server = Server::start(&rules, &dir.path().join("data"), &[]);
    (dir, server)
}

pub fn write_uji(root: &Path, rate: &str) {
    for (path, text) in uji_tree(rate) {
        write_file(&root.join(path), &text);
    }
}
