//! Reading the rules folder: only content changes wake the watcher, and files the runtime cannot
//! or must not read (FIFOs, devices, unreadable files, names that are not UTF-8, too many files)
//! are located problems, never a hang, a silent omission or a runaway read.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pintu_tests::{run_pintu, uji_server, write_file, write_uji, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Opens and reads every file under `dir`: access events only, no change.
fn read_everything(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            n += read_everything(&path);
        } else if meta.is_file() {
            let _ = std::fs::read(&path);
            n += 1;
        }
    }
    n
}

/// A value from `/metrics`: the line starting with `series` (0 if the series has none yet).
async fn metric(s: &Server, series: &str) -> u64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

const READS: &str = "pintu_rules_folder_reads_total ";
const IGNORED: &str = "pintu_rules_events_total{outcome=\"ignored\"} ";

/// Waits until the metric `series` has gone past `before`; `what` says what that means.
async fn wait_for_metric(s: &Server, series: &str, before: u64, what: &str) {
    let started = Instant::now();
    while metric(s, series).await <= before {
        assert!(
            started.elapsed() < WAIT,
            "{what} never happened; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the watcher has passed over access events (counted, not acted on).
async fn wait_for_ignored_events(s: &Server, before: u64) {
    let what = "the watcher reporting the access events as ignored";
    wait_for_metric(s, IGNORED, before, what).await;
}

async fn reload_count(s: &Server) -> usize {
    let (_, v) = s.admin_get("/admin/reloads?limit=1000").await;
    v["reloads"].as_array().unwrap().len()
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn diagnostics(v: &Value) -> Vec<String> {
    v["error"]["diagnostics"]
        .as_array()
        .unwrap_or_else(|| panic!("no diagnostics in {v}"))
        .iter()
        .map(|d| {
            format!(
                "{}:{}:{}: {}",
                d["file"], d["line"], d["column"], d["message"]
            )
        })
        .collect()
}

#[tokio::test]
async fn reading_the_folder_does_not_wake_the_watcher() {
    let (_dir, s) = uji_server("0.1");
    let rules = s.rules.clone();
    let first = s.release().await.unwrap();
    let reads_before = metric(&s, READS).await;
    let records_before = reload_count(&s).await;
    assert!(reads_before >= 1, "start-up reads the folder");

    // Every read is an access event for the watcher; none is a change.
    let ignored = metric(&s, IGNORED).await;
    for _ in 0..3 {
        assert!(read_everything(&rules) >= 4);
    }
    wait_for_ignored_events(&s, ignored).await;
    assert_eq!(metric(&s, READS).await, reads_before, "{}", s.log());

    // A real change is read, built and recorded once; the build's own reads wake nothing.
    write_uji(&rules, "0.2");
    s.wait_for_new_release(Some(&first), WAIT).await;
    let ignored = metric(&s, IGNORED).await;
    read_everything(&rules);
    wait_for_ignored_events(&s, ignored).await;
    let reads = metric(&s, READS).await - reads_before;
    println!("folder reads for one save of 4 files: {reads}");
    // Four files saved are at most four debounced bursts.
    assert!((1..=4).contains(&reads), "{reads} reads:\n{}", s.log());
    assert_eq!(reload_count(&s).await, records_before + 1, "{}", s.log());
}

const CHANGES: &str = "pintu_rules_events_total{outcome=\"change\"} ";

#[tokio::test]
async fn git_writing_its_own_folder_inside_the_rules_folder_reads_nothing() {
    let (_dir, s) = uji_server("0.1");
    let rules = s.rules.clone();
    let first = s.release().await.unwrap();
    let reads_before = metric(&s, READS).await;

    // What `git commit` or `git fetch` write: the rules themselves stay as they were.
    let changes = metric(&s, CHANGES).await;
    write_file(&rules.join(".git/index"), "index");
    write_file(&rules.join(".git/objects/ab/cdef0123"), "object");
    wait_for_metric(&s, CHANGES, changes, "the watcher seeing the writes").await;

    // A real save after them: its reload comes after any the writes above could have started,
    // so the count of reads now tells whether they started one.
    write_uji(&rules, "0.2");
    s.wait_for_new_release(Some(&first), WAIT).await;
    assert_eq!(metric(&s, READS).await, reads_before + 1, "{}", s.log());
}

const WHOLE: &str = "pintu_rules_reads_total{scope=\"whole\"} ";
const NAMED: &str = "pintu_rules_reads_total{scope=\"changed_paths\"} ";

/// The levy total of `uji` for x = 100, once it is `want`.
async fn wait_for_levy_total(s: &Server, want: &str) {
    let started = Instant::now();
    loop {
        let (status, v) = s
            .post("/v1/permits/uji/levy", json!({"data": {"x": 100}}))
            .await;
        if status == 200 && v["total"] == want {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "the levy total never became {want} (last: {status} {v}); log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn saves_read_only_what_the_watcher_saw_change_and_a_forced_reload_reads_everything() {
    let (dir, s) = uji_server("0.1");
    let rules = s.rules.clone();
    let first = s.release().await.unwrap();
    let whole = metric(&s, WHOLE).await;
    assert!(whole >= 1, "start-up reads the whole folder");

    // A save, then a permit type's folder swapped for a new version by two renames, as a
    // deployment does: each is read from the paths the watcher named, and goes live.
    write_uji(&rules, "0.2");
    s.wait_for_new_release(Some(&first), WAIT).await;
    wait_for_levy_total(&s, "20").await;
    let staging = dir.path().join("staging");
    write_uji(&staging, "0.3");
    std::fs::rename(rules.join("uji"), dir.path().join("uji-old")).unwrap();
    std::fs::rename(staging.join("uji"), rules.join("uji")).unwrap();
    wait_for_levy_total(&s, "30").await;
    assert_eq!(metric(&s, WHOLE).await, whole, "{}", s.log());
    assert!(metric(&s, NAMED).await >= 2, "{}", s.log());

    // A file changed in the folder swapped in is seen: the watcher watches the new folder.
    write_file(
        &rules.join("uji/permit.toml"),
        &pintu_tests::uji_tree("0.4")[0].1,
    );
    wait_for_levy_total(&s, "40").await;

    // An admin's reload trusts nothing it read before.
    let (status, v) = s.admin_post("/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(metric(&s, WHOLE).await, whole + 1, "{}", s.log());
}

#[tokio::test]
async fn a_folder_that_fails_to_read_is_recorded_once_not_per_event() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    let broken = rules.join("uji/tests/rusak.json");
    std::fs::write(&broken, b"{\"data\": \xff}").unwrap();
    let s = Server::start(&rules, &dir.path().join("data"), &[]);
    let reloads = s.wait_for_reloads(1, WAIT).await;
    assert_eq!(reloads[0]["accepted"], false, "{}", reloads[0]);
    assert_eq!(
        reloads[0]["diagnostics"][0]["file"], "uji/tests/rusak.json",
        "{}",
        reloads[0]
    );

    // A chmod is an event worth a read, but the folder fails exactly as before: not recorded.
    let reads = metric(&s, READS).await;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_for_metric(&s, READS, reads, "a read after the chmod").await;
    // Access events only: not even read.
    let ignored = metric(&s, IGNORED).await;
    read_everything(&rules);
    wait_for_ignored_events(&s, ignored).await;

    // A real change with a new failure is recorded, as the second entry: reloads run one at a
    // time, so anything the events above recorded would be before it.
    std::fs::rename(&broken, rules.join("uji/tests/rusak-2.json")).unwrap();
    let reloads = s.wait_for_reloads(2, WAIT).await;
    assert_eq!(
        reloads[0]["diagnostics"][0]["file"], "uji/tests/rusak-2.json",
        "{reloads:?}"
    );
    let ignored = metric(&s, IGNORED).await;
    read_everything(&rules);
    wait_for_ignored_events(&s, ignored).await;
    std::fs::remove_file(rules.join("uji/tests/rusak-2.json")).unwrap();
    s.wait_for_new_release(None, WAIT).await;
    let (_, v) = s.admin_get("/admin/reloads").await;
    let accepted: Vec<bool> = v["reloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["accepted"].as_bool().unwrap())
        .collect();
    assert_eq!(accepted, [true, false, false], "{v}\n{}", s.log());
}

#[tokio::test]
async fn a_fifo_in_the_folder_is_a_located_problem_not_a_hang() {
    let (_dir, s) = uji_server("0.1");
    let (rules, data) = (s.rules.clone(), s.data.clone());
    let good = s.release().await.unwrap();
    mkfifo(&rules.join("uji/tests/pipa.json"));

    // The admin's reload answers, naming the FIFO.
    let started = Instant::now();
    let (status, v) = s.admin_post("/admin/reload", json!({})).await;
    println!("reload with a FIFO answered in {:?}", started.elapsed());
    assert_eq!(status, 422, "{v}");
    let diags = diagnostics(&v);
    assert!(
        diags
            .iter()
            .any(|d| d.contains("\"uji/tests/pipa.json\":1:1") && d.contains("not a regular file")),
        "{diags:?}"
    );
    // Reactivating reads the folder too (to pin it); it answers as well.
    let (status, v) = s
        .admin_post(&format!("/admin/releases/{good}/activate"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.release().await.as_deref(), Some(good.as_str()));
    assert_eq!(s.terminate(), Some(0), "SIGTERM ends the server");

    // A restart with the FIFO still there comes up and serves the last good release.
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(s.release().await.as_deref(), Some(good.as_str()));
    assert_eq!(s.terminate(), Some(0));
}

#[test]
fn devices_and_names_that_are_not_utf8_are_located_problems() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    let check = |rules: &Path| run_pintu(&["check", rules.to_str().unwrap()], dir.path());
    assert_eq!(check(&rules).0, 0);

    // A character device (the null device): read as an empty file before, silently.
    let dev = rules.join("uji/tables");
    std::fs::create_dir_all(&dev).unwrap();
    let ok = Command::new("mknod")
        .arg(dev.join("kosong.toml"))
        .args(["c", "1", "3"])
        .status()
        .unwrap()
        .success();
    if ok {
        let (code, out, _) = check(&rules);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("uji/tables/kosong.toml:1:1: not a regular file"),
            "{out}"
        );
        std::fs::remove_file(dev.join("kosong.toml")).unwrap();
    } else {
        println!("mknod is not permitted here; the device case is covered by the FIFO test");
    }

    // Two names that differ only in bytes that are not UTF-8 must not become one file.
    let tests = rules.join("uji/tests");
    let a = tests.join(OsStr::from_bytes(b"a\xff.json"));
    let b = tests.join(OsStr::from_bytes(b"a\xfe.json"));
    std::fs::write(&a, r#"{"data": {"x": "1"}, "expect": {"valid": true}}"#).unwrap();
    std::fs::write(&b, r#"{"data": {"x": "1"}, "expect": {"valid": false}}"#).unwrap();
    let (code, out, _) = check(&rules);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("file name is not UTF-8"))
            .count(),
        2,
        "{out}"
    );
}

#[test]
fn the_file_count_limit_stops_the_walk_and_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    for i in 0..20 {
        write_file(&rules.join(format!("docs/catatan-{i:02}.md")), "catatan\n");
    }
    let config = dir.path().join("pintu.toml");
    std::fs::write(&config, "[limits]\nmax_rule_files = 5\n").unwrap();
    let (code, out, _) = run_pintu(
        &[
            "check",
            rules.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "{out}");
    let problems: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("more than 5 files"))
        .collect();
    assert_eq!(problems.len(), 1, "{out}");
    // Located at the first file past the limit, whole-file style (line 1, column 1).
    assert!(problems[0].contains(".md:1:1: "), "{out}");
    assert!(!out.contains(":0:0:"), "{out}");
}

/// Runs `pintu check` without the capabilities that let root read any file, so a `chmod 000`
/// file is unreadable even in a root test run. `None` where that cannot be arranged.
fn check_without_read_override(rules: &Path, cwd: &Path) -> Option<(i32, String)> {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let mut cmd = if is_root {
        let mut c = Command::new("setpriv");
        c.args([
            "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search",
        ])
        .arg(pintu_tests::pintu_bin());
        c
    } else {
        Command::new(pintu_tests::pintu_bin())
    };
    let out = cmd
        .args(["check", rules.to_str().unwrap()])
        .current_dir(cwd)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("setpriv:") {
        println!("{stderr}");
        return None;
    }
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn an_unreadable_file_is_a_located_problem_not_a_silent_omission() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let rules: PathBuf = dir.path().join("rules");
    write_uji(&rules, "0.1");
    let Some((code, out)) = check_without_read_override(&rules, dir.path()) else {
        println!("cannot drop read capabilities here; the unit test covers the error path");
        return;
    };
    assert_eq!(code, 0, "{out}");
    let fixture = rules.join("uji/tests/nol.json");
    std::fs::set_permissions(&fixture, std::fs::Permissions::from_mode(0o000)).unwrap();
    let (code, out) = check_without_read_override(&rules, dir.path()).unwrap();
    assert_eq!(code, 1, "the fixture must not just disappear:\n{out}");
    assert!(
        out.contains("uji/tests/nol.json:1:1: cannot read file"),
        "{out}"
    );
}
