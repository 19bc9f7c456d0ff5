//! Storage under attack and accident: bounded records, records that always read back, a full
//! disk, damaged or empty database files, private permissions, paging and retention.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pintu_tests::{run_pintu, uji_server, write_file, write_uji, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// `[[[…1…]]]`, `levels` deep, as JSON text (no recursion to build or drop it).
fn nested_text(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[tokio::test]
async fn invalid_requests_store_bounded_records() {
    let (_dir, s) = uji_server("1");
    let db = s.data.join("pintu.redb");
    let before = std::fs::metadata(&db).unwrap().len();
    // Nearly 1 MiB of unknown fields per request: each becomes an error to report.
    let mut data = serde_json::Map::new();
    data.insert("x".into(), json!("1"));
    for i in 0..50_000 {
        data.insert(format!("k{i:06}"), json!(i));
    }
    let body = json!({ "data": data });
    assert!(body.to_string().len() > 700_000);
    const REQUESTS: usize = 20;
    for _ in 0..REQUESTS {
        let (status, v) = s.post("/v1/permits/uji/levy", body.clone()).await;
        assert_eq!(status, 422, "{v}");
    }
    let grown = std::fs::metadata(&db).unwrap().len().saturating_sub(before);
    println!(
        "{REQUESTS} requests of {} bytes grew the database by {grown} bytes",
        body.to_string().len()
    );
    let (status, v) = s.admin_get("/admin/decisions?limit=1000").await;
    assert_eq!(status, 200, "{v}");
    let list = v["decisions"].as_array().unwrap();
    assert_eq!(list.len(), REQUESTS);
    for d in list {
        // The input is an excerpt, marked, no larger than the bound; so is the error list.
        let shown: String = d["input"].to_string().chars().take(300).collect();
        assert_eq!(
            d["input"]["truncated"], true,
            "input stored whole: {shown}…"
        );
        assert!(d["input"]["excerpt"].as_str().unwrap().len() <= 32 * 1024);
        assert!(d["input"]["bytes"].as_u64().unwrap() > 700_000);
        let shown: String = d["output"].to_string().chars().take(300).collect();
        assert_eq!(
            d["output"]["truncated"], true,
            "output stored whole: {shown}…"
        );
        // Excerpt, marker and all, within the bound plus a little.
        assert!(d["input"].to_string().len() <= 33 * 1024);
        assert!(d["output"].to_string().len() <= 33 * 1024);
    }
    // 20 requests each store at most ~64 KiB; the old behaviour stored ~15 MB each.
    assert!(grown < 16 * 1024 * 1024, "database grew by {grown} bytes");
}

#[tokio::test]
async fn deep_input_and_deep_traces_leave_every_log_readable() {
    let (_dir, s) = uji_server("1");
    // Deeply nested values sent as input, as deep as the request parser takes: whether they
    // are refused or recorded, the log stays readable afterwards.
    for depth in 120..=127 {
        let text = format!(
            "{{\"data\": {{\"x\": \"1\", \"y\": {}}}}}",
            nested_text(depth)
        );
        let r = s
            .http
            .post(s.url("/v1/permits/uji/validate"))
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        println!("{depth}-deep input answered {}", r.status());
        assert!(r.status().as_u16() < 500, "{}", r.status());
    }
    let (status, v) = s.admin_get("/admin/decisions").await;
    assert_eq!(status, 200, "{v}");
    for d in v["decisions"].as_array().unwrap() {
        assert!(d.get("unreadable").is_none(), "{d}");
    }

    // A candidate whose fixture fails with a 125-deep trace: its reload record holds it.
    write_file(
        &s.rules.join("uji/levy.rhai"),
        r#"fn levy(data, params) {
    let t = 1;
    for i in 0..125 { t = [t]; }
    #{ items: [#{ code: "uji", label: "Retribusi uji", amount: data.x }], trace: #{ deep: t } }
}
"#,
    );
    write_file(
        &s.rules.join("uji/tests/dalam.json"),
        r#"{"data": {"x": "3"}, "expect": {"total": "4"}}"#,
    );
    let (status, v) = s.admin_post("/admin/reload", json!({})).await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = s.admin_get("/admin/reloads").await;
    assert_eq!(status, 200, "{v}");
    let rejected = &v["reloads"][0];
    assert_eq!(rejected["accepted"], false, "{rejected}");
    assert!(
        rejected.to_string().contains("nested too deep to record"),
        "the deep part is replaced by a marker"
    );
}

#[tokio::test]
async fn reloads_and_audit_page_with_before() {
    let (_dir, s) = uji_server("1");
    for rate in ["2", "3", "4"] {
        write_uji(&s.rules, rate);
        let (status, v) = s.admin_post("/admin/reload", json!({})).await;
        assert_eq!(status, 200, "{v}");
    }
    for route in ["/admin/audit", "/admin/reloads"] {
        let key = route.trim_start_matches("/admin/");
        let (status, all) = s.admin_get(&format!("{route}?limit=100")).await;
        assert_eq!(status, 200, "{all}");
        let all: Vec<u64> = all[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert!(all.len() >= 3, "{route}: {all:?}");
        let mut paged = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let path = match before {
                Some(b) => format!("{route}?limit=1&before={b}"),
                None => format!("{route}?limit=1"),
            };
            let (status, v) = s.admin_get(&path).await;
            assert_eq!(status, 200, "{v}");
            paged.extend(
                v[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["seq"].as_u64().unwrap()),
            );
            match v["next_before"].as_u64() {
                Some(b) => before = Some(b),
                None => break,
            }
            assert!(paged.len() <= all.len(), "{route}: paging does not advance");
        }
        assert_eq!(paged, all, "{route}: pages of one add up to the whole list");
    }
    let (status, v) = s.admin_get("/admin/releases?limit=1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["releases"].as_array().unwrap().len(), 1);
    assert_eq!(v["activations"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn retention_prunes_the_decision_log_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "1");
    let config = dir.path().join("pintu.toml");
    std::fs::write(
        &config,
        "[retention]\ndecisions_max_bytes = 20000\nprune_interval_secs = 1\nprune_batch = 7\n",
    )
    .unwrap();
    let s = Server::start(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    for x in 1..=200 {
        let (status, v) = s
            .post("/v1/permits/uji/levy", json!({"data": {"x": x}}))
            .await;
        assert_eq!(status, 200, "{v}");
    }
    // 200 decisions of about 300 bytes are 60 000 bytes: pruning takes them below 20 000
    // (listed records are about the size of stored ones), in steps of 7, and says so.
    let started = Instant::now();
    let (kept, listed) = loop {
        let (status, v) = s.admin_get("/admin/decisions?limit=1000").await;
        assert_eq!(status, 200, "{v}");
        let kept = v["decisions"].as_array().unwrap().clone();
        let listed: usize = kept.iter().map(|d| d.to_string().len()).sum();
        if listed <= 22_000 && s.log().contains("retention: pruned") {
            break (kept, listed);
        }
        assert!(started.elapsed() < WAIT, "not pruned; log:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "{} decisions ({listed} bytes listed) kept after pruning",
        kept.len()
    );
    assert!(kept.len() < 100, "{} decisions kept", kept.len());
    // The newest survive; the oldest went.
    assert_eq!(kept[0]["input"]["x"], 200);
    assert!(kept.iter().all(|d| d["input"]["x"].as_u64().unwrap() > 1));
}

#[test]
fn an_empty_database_file_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "1");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("pintu.redb"), b"").unwrap();
    let (code, _, err) = run_pintu(
        &[
            "serve",
            "--rules",
            rules.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("empty (0 bytes)"), "{err}");
    assert!(!data.join("admin.token").exists(), "no new admin was made");
    assert_eq!(std::fs::metadata(data.join("pintu.redb")).unwrap().len(), 0);
    let (code, out, _) = run_pintu(
        &["store", "check", "--data", data.to_str().unwrap()],
        dir.path(),
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("empty"), "{out}");
}

#[tokio::test]
async fn a_damaged_database_is_refused_and_store_check_finds_it() {
    let (dir, s) = uji_server("1");
    for x in 1..=50 {
        let (status, _) = s
            .post("/v1/permits/uji/levy", json!({"data": {"x": x}}))
            .await;
        assert_eq!(status, 200);
    }
    let (rules, data) = (s.rules.clone(), s.data.clone());
    assert_eq!(s.terminate(), Some(0));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700, "data folder is private");
        assert_eq!(mode(&data.join("pintu.redb")), 0o600, "database is private");
        assert_eq!(mode(&data.join("admin.token")), 0o600);
    }

    let check = |cwd: &Path| run_pintu(&["store", "check", "--data", data.to_str().unwrap()], cwd);
    let (code, out, err) = check(dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok"), "{out}");
    assert!(out.contains("decisions: 50 records"), "{out}");

    // Flip one byte in every page after the first.
    let db = data.join("pintu.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let mut at = 4096 + 100;
    while at < bytes.len() {
        bytes[at] ^= 0xff;
        at += 4096;
    }
    std::fs::write(&db, &bytes).unwrap();

    let (code, out, err) = check(dir.path());
    println!("store check on a damaged file: {out}{err}");
    assert_ne!(code, 0, "{out}{err}");
    let (code, _, err) = run_pintu(
        &[
            "serve",
            "--rules",
            rules.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    println!("serve on a damaged file: {err}");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("pintu.redb"), "{err}");
    assert!(
        !err.contains("panicked"),
        "a damaged file is an error, not a crash: {err}"
    );
}

/// A small tmpfs mounted for one test, unmounted even if the test fails.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a file until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
async fn a_full_disk_is_reported_and_the_server_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mount = match Tmpfs::mount(&dir.path().join("disk"), "24m") {
        Ok(m) => m,
        Err(e) => {
            println!("SKIPPED: cannot mount a tmpfs here ({e}); needs root");
            return;
        }
    };
    let rules = dir.path().join("rules");
    write_uji(&rules, "1");
    let data = mount.path.join("data");
    let s = Server::start(&rules, &data, &[]);
    let (status, v) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": 1}}))
        .await;
    assert_eq!(status, 200, "{v}");

    let filler = mount.path.join("filler");
    fill(&filler);
    // Large invalid requests use up whatever free pages the database still has.
    let pad = "p".repeat(30_000);
    let mut full = None;
    for i in 0..2_000 {
        let (status, v) = s
            .post(
                "/v1/permits/uji/levy",
                json!({"data": {"x": i + 2, "pad": pad}}),
            )
            .await;
        match status {
            422 => continue,
            503 => {
                full = Some(v);
                break;
            }
            other => panic!("unexpected {other}: {v}; log:\n{}", s.log()),
        }
    }
    let v = full.unwrap_or_else(|| panic!("the disk never filled; log:\n{}", s.log()));
    assert_eq!(v["error"]["code"], "storage_unavailable", "{v}");
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unavailable");
    assert!(
        health["reason"].as_str().unwrap().contains("storage"),
        "{health}"
    );
    let (status, v) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": 7}}))
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "storage_unavailable");

    // Space comes back: the server recovers without a restart.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        let (status, health) = s.get("/health").await;
        if status == 200 {
            println!(
                "recovered {} ms after space returned",
                started.elapsed().as_millis()
            );
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "still {health} after space returned; log:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, v) = s
        .post("/v1/permits/uji/levy", json!({"data": {"x": 4242}}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.admin_get("/admin/decisions?limit=5").await;
    assert_eq!(status, 200, "{v}");
    let newest: &Value = &v["decisions"][0];
    assert_eq!(newest["input"]["x"], 4242, "{newest}");
    drop(s);
    drop(mount);
}
