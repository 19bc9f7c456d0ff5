//! The sample connectors (`plugins/oss-rba`, `plugins/simbg`) in a test's own plugins folder,
//! pointed at a fake OSS or SIMBG, with their secrets in the data folder, and a server on a copy
//! of the sample rules.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{copy_dir, repo_root, write_file, Server};

/// Delivery settings that retry within a test's patience: 100 ms, then doubling up to 400 ms.
pub const FAST_DELIVERY: &str = "[connectors]\nmax_attempts = 6\nbackoff_initial_ms = 100\nbackoff_max_ms = 400\npoll_interval_ms = 50\n";

/// Copies connector `name` (its manifest and component only, as the release reads them) into
/// `plugins/<name>/`, letting `edit` rewrite the manifest.
pub fn install(plugins: &Path, name: &str, edit: impl FnOnce(&mut toml_edit::DocumentMut)) {
    let from = repo_root().join("plugins").join(name);
    let text = std::fs::read_to_string(from.join("connector.toml"))
        .unwrap_or_else(|e| panic!("plugins/{name}/connector.toml: {e}"));
    let mut manifest: toml_edit::DocumentMut = text.parse().expect("manifest parses");
    let component = manifest["component"]
        .as_str()
        .expect("component in manifest")
        .to_owned();
    edit(&mut manifest);
    let to = plugins.join(name);
    std::fs::create_dir_all(&to).expect("mkdir plugin");
    std::fs::copy(from.join(&component), to.join(&component)).expect("copy component");
    write_file(&to.join("connector.toml"), &manifest.to_string());
}

/// Points a manifest at `origin` (`http://127.0.0.1:<port>`): `[allow] hosts` and
/// `[config] base_url` (`origin` + `path`).
pub fn point_at(manifest: &mut toml_edit::DocumentMut, origin: &str, path: &str) {
    let mut hosts = toml_edit::Array::new();
    hosts.push(origin);
    manifest["allow"]["hosts"] = toml_edit::value(hosts);
    manifest["config"]["base_url"] = toml_edit::value(format!("{origin}{path}"));
}

/// Writes `DATA/secrets.toml` (mode 0600, as the host expects).
pub fn write_secrets(data: &Path, text: &str) {
    std::fs::create_dir_all(data).expect("mkdir data");
    let path = data.join("secrets.toml");
    std::fs::write(&path, text).expect("write secrets");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// A test's folders: `rules/` (a copy of the sample rules), `plugins/`, `data/`, and
/// `pintu.toml` with [`FAST_DELIVERY`].
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&repo_root().join("rules"), &dir.path().join("rules"));
        std::fs::create_dir_all(dir.path().join("plugins")).expect("mkdir plugins");
        write_file(&dir.path().join("pintu.toml"), FAST_DELIVERY);
        Self { dir }
    }

    pub fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts `pintu serve` on these folders and waits until a release serves.
    pub async fn serve(&self) -> Server {
        let config = self.dir.path().join("pintu.toml");
        let plugins = self.plugins();
        let server = Server::start(
            &self.dir.path().join("rules"),
            &self.data(),
            &[
                "--config",
                config.to_str().expect("utf-8 path"),
                "--plugins",
                plugins.to_str().expect("utf-8 path"),
            ],
        );
        crate::applications::wait_for_release(&server).await;
        server
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

/// Every application of the server (admin's view), walking the pages.
pub async fn all_applications(server: &Server, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/applications?limit=1000{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", crate::applications::encode(c)));
        }
        let (status, v) = server.admin_get(&path).await;
        assert_eq!(status, 200, "listing applications: {v}");
        out.extend(v["applications"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
}

/// Polls (bounded) until `check` returns something; panics naming `what` with the server log.
pub async fn wait_until<T>(
    server: &Server,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            started.elapsed() < timeout,
            "waited {timeout:?} for {what}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
