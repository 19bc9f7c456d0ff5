#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test harness: failing loudly is the point"
)]

//! Harness for the end-to-end suites: runs the real `pintu` binary on an ephemeral port with its
//! own rules and data folders, and talks to it over HTTP.

pub mod applications;
pub mod connectors;
pub mod fake;
pub mod fake_oss;
pub mod fake_simbg;
pub mod recorder;
pub mod sample_connectors;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// How long the nested `cargo build` of `pintu` may take (a cold build on a loaded machine).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long a `pintu` command-line run (`check`, `token`, ...) may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a server may take to exit after SIGTERM or SIGKILL.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the `pintu` binary, built once per test run so the suites always test current code.
///
/// It is built with the profile of this test executable (`cargo test --release` tests a release
/// `pintu`), and the path is the one cargo reports for the executable it just built, so a stale
/// binary from another profile or target folder is never run.
pub fn pintu_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_pintu).clone()
}

/// The cargo profile a test executable at `exe` was built with, from its folder:
/// `target/<profile dir>/deps/<test>`, where `debug` is the folder of the `dev` and `test`
/// profiles and every other profile's folder bears its name.
pub fn profile_of(exe: &Path) -> String {
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    match dir {
        "debug" => "dev".to_owned(),
        other => other.to_owned(),
    }
}

fn build_pintu() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile = profile_of(&std::env::current_exe().expect("current exe"));
    // CARGO_TARGET_DIR and the rest of cargo's configuration are inherited from the environment.
    let mut child = Command::new(cargo)
        .args(["build", "-q", "-p", "pintu", "--bin", "pintu", "--profile"])
        .arg(&profile)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cargo build of pintu runs");
    let stdout = child.stdout.take().expect("stdout piped");
    let reader = std::thread::spawn(move || {
        let mut exe = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "pintu" {
                if let Some(path) = msg["executable"].as_str() {
                    exe = Some(PathBuf::from(path));
                }
            }
        }
        exe
    });
    let status = wait_bounded(&mut child, BUILD_TIMEOUT)
        .unwrap_or_else(|| panic!("building pintu (profile {profile}) took longer than {BUILD_TIMEOUT:?}; killed the build"));
    assert!(
        status.success(),
        "building pintu (profile {profile}) failed: {status}"
    );
    let exe = reader
        .join()
        .expect("cargo output reader")
        .unwrap_or_else(|| {
            panic!("cargo built pintu (profile {profile}) but reported no executable")
        });
    assert!(
        exe.is_file(),
        "cargo reported `{}`, which is not a file",
        exe.display()
    );
    eprintln!("testing {} (profile {profile})", exe.display());
    exe
}

/// Waits for `child` to exit for at most `timeout`; on timeout kills it and returns `None`.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `pintu` with `args` to completion (at most [`CLI_TIMEOUT`]); returns (exit code,
/// stdout, stderr).
pub fn run_pintu(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let mut child = Command::new(pintu_bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pintu runs");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr piped")));
    let status = wait_bounded(&mut child, CLI_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "`pintu {}` did not finish within {CLI_TIMEOUT:?}",
            args.join(" ")
        )
    });
    (
        status.code().unwrap_or(-1),
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
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

/// A log line's marker and what to do when the server prints it.
type Hook = (&'static str, Box<dyn FnOnce() + Send>);

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
        Self::launch(Command::new(pintu_bin()), rules, data, extra, None)
    }

    /// [`Server::start`] that runs `act` as soon as the server logs a line containing `marker`
    /// (before it listens, when the line comes then): to act at a given point of the start-up.
    pub fn start_acting_at(
        rules: &Path,
        data: &Path,
        extra: &[&str],
        marker: &'static str,
        act: impl FnOnce() + Send + 'static,
    ) -> Self {
        let hook: Hook = (marker, Box::new(act));
        Self::launch(Command::new(pintu_bin()), rules, data, extra, Some(hook))
    }

    /// [`Server::start`] with the connectors of `plugins` released with the rules.
    pub fn start_with_plugins(rules: &Path, plugins: &Path, data: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--plugins", plugins.to_str().expect("UTF-8 path")];
        args.extend_from_slice(extra);
        Self::start(rules, data, &args)
    }

    /// Like [`Server::start`], with the server's open-file limit lowered to `nofile` (the
    /// shell's `ulimit -n`), to show what happens when file descriptors run short.
    pub fn start_with_open_file_limit(
        rules: &Path,
        data: &Path,
        extra: &[&str],
        nofile: u32,
    ) -> Self {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(pintu_bin());
        Self::launch(shell, rules, data, extra, None)
    }

    fn launch(
        mut command: Command,
        rules: &Path,
        data: &Path,
        extra: &[&str],
        mut hook: Option<Hook>,
    ) -> Self {
        let mut child = command
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
                if hook
                    .as_ref()
                    .is_some_and(|(marker, _)| line.contains(marker))
                {
                    if let Some((_, act)) = hook.take() {
                        act();
                    }
                }
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

    /// A request of `method` with `token` as the bearer and, if given, a JSON body.
    pub async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        into_json(req.send().await.expect("request")).await
    }

    /// PUT of a JSON body with `token` as the bearer.
    pub async fn put_as(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send_as(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    /// PATCH of a JSON body with `token` as the bearer.
    pub async fn patch_as(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send_as(reqwest::Method::PATCH, path, token, Some(body))
            .await
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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_child(&self.child);
        kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("cannot send {signal:?} to pintu (pid {pid:?}): {e}"));
    }

    /// SIGTERM, then waits (at most [`EXIT_TIMEOUT`]) for a clean exit; returns the exit code,
    /// or `None` if the server did not exit in time (it is then killed).
    pub fn terminate(mut self) -> Option<i32> {
        self.signal(Signal::TERM);
        wait_bounded(&mut self.child, EXIT_TIMEOUT).and_then(|s| s.code())
    }

    /// SIGKILL: no shutdown code runs, as in a crash. Returns once the process is gone, and
    /// checks that it was the signal that ended it.
    pub fn kill(mut self) {
        self.signal(Signal::KILL);
        let status = wait_bounded(&mut self.child, EXIT_TIMEOUT)
            .unwrap_or_else(|| panic!("pintu did not die within {EXIT_TIMEOUT:?} of SIGKILL"));
        assert_eq!(
            status.signal(),
            Some(Signal::KILL.as_raw()),
            "pintu ended by itself ({status}) before the kill"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, EXIT_TIMEOUT);
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

/// [`uji_server`] with a `plugins/` folder beside `rules/` holding a copy of each fixture
/// connector in `fixtures` (see [`connectors`]).
pub fn uji_server_plugins(rate: &str, fixtures: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules");
    write_uji(&rules, rate);
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir plugins");
    for name in fixtures {
        connectors::copy_fixture(&plugins, name);
    }
    let server = Server::start_with_plugins(&rules, &plugins, &dir.path().join("data"), &[]);
    (dir, server)
}

/// A permit type `lambat` with `fixtures` fixtures whose levy counts to `loops` each: the
/// fixtures make every build of the rules take a measurable time (at 100 000, tens of
/// milliseconds per fixture here). Keep `loops` at 200 000 or less: each fixture must stay far
/// inside the 1 s wall-clock limit on a busy machine.
pub fn write_slow_permit(rules: &Path, fixtures: usize, loops: u32) {
    write_file(
        &rules.join("lambat/permit.toml"),
        "name = \"Izin Lambat\"\n\n[[fields]]\nname = \"x\"\ntype = \"decimal\"\nrequired = true\n",
    );
    write_file(
        &rules.join("lambat/levy.rhai"),
        &format!(
            "fn levy(data, params) {{\n    let n = 0;\n    for i in 0..{loops} {{ n += 1; }}\n    \
             #{{ items: [#{{ code: \"lambat\", label: \"Lambat\", amount: data.x }}], trace: #{{ n: n }} }}\n}}\n"
        ),
    );
    for i in 0..fixtures {
        write_file(
            &rules.join(format!("lambat/tests/f{i}.json")),
            &format!(r#"{{"data": {{"x": "{i}"}}, "expect": {{"valid": true, "total": "{i}"}}}}"#),
        );
    }
}

pub fn write_uji(root: &Path, rate: &str) {
    for (path, text) in uji_tree(rate) {
        write_file(&root.join(path), &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nested_build_uses_the_test_executables_profile() {
        let cases = [
            ("/w/target/debug/deps/e2e-1a2b", "dev"),
            ("/w/target/release/deps/e2e-1a2b", "release"),
            (
                "/w/target/x86_64-unknown-linux-gnu/release/deps/e2e-1a2b",
                "release",
            ),
            ("/w/custom-target/ci/deps/e2e-1a2b", "ci"),
        ];
        for (exe, profile) in cases {
            assert_eq!(profile_of(Path::new(exe)), profile, "{exe}");
        }
    }

    #[test]
    fn the_binary_under_test_is_the_one_cargo_built_for_this_profile() {
        let bin = pintu_bin();
        let exe = std::env::current_exe().unwrap();
        // Same profile folder as this test executable (target/<profile>/deps/<test>).
        assert_eq!(
            bin.parent(),
            exe.parent().and_then(Path::parent),
            "testing {} from {}",
            bin.display(),
            exe.display()
        );
    }
}
