//! `plugins/<name>/connector.toml`: what a connector is, what it may reach and under which
//! limits it runs. Every problem is a diagnostic located in the manifest
//! (`plugins/<name>/connector.toml:line:col: …`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diagnostic::Diagnostic;

/// The WIT versions of `pintu:connector` this host has bindings for.
pub const SUPPORTED_WIT: &[&str] = &["0.1.0"];

pub const DEFAULT_MEMORY_MIB: u32 = 32;
pub const MAX_MEMORY_MIB: u32 = 256;
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The shortest `sync_every`: a schedule tighter than this is a mistake, not a need.
pub const MIN_SYNC_EVERY: Duration = Duration::from_secs(1);

/// The file name of a connector's manifest inside its folder.
pub const MANIFEST_FILE: &str = "connector.toml";

/// A checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Equal to the folder name; `[a-z0-9-]+`.
    pub name: String,
    /// Semver of the connector.
    pub version: String,
    /// The `pintu:connector` version it was built against (one of [`SUPPORTED_WIT`]).
    pub wit: String,
    /// The component's file name, relative to the folder.
    pub component: String,
    /// Lowercase hex SHA-256 of the component.
    pub sha256: String,
    /// Outbox event types to deliver.
    pub events: Vec<String>,
    /// How often `sync` runs; none: never.
    pub sync_every: Option<Duration>,
    /// `sync_every` as written, e.g. `15m`.
    pub sync_every_text: Option<String>,
    /// `scheme://host:port` entries, normalised (lowercase scheme and host).
    pub allow_hosts: Vec<String>,
    pub limits: Limits,
    /// Secret name → environment variable that may hold it.
    pub secrets: BTreeMap<String, String>,
    /// The connector's own settings (before the office's overrides).
    pub config: toml::Table,
}

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_mib: u32,
    pub timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    version: Spanned<String>,
    wit: Spanned<String>,
    component: Spanned<String>,
    sha256: Spanned<String>,
    #[serde(default)]
    events: Vec<Spanned<String>>,
    sync_every: Option<Spanned<String>>,
    #[serde(default)]
    allow: RawAllow,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    secrets: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    config: toml::Table,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mib: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
}

/// The path diagnostics of folder `folder` name for its manifest.
pub fn manifest_path(folder: &str) -> String {
    format!("plugins/{folder}/{MANIFEST_FILE}")
}

impl Manifest {
    /// Parses and checks the manifest text of the connector in folder `folder`.
    pub fn parse(folder: &str, source: &str) -> Result<Self, Vec<Diagnostic>> {
        let file = manifest_path(folder);
        let at = |span: Range<usize>, message: String| {
            Diagnostic::at_offset(&file, source, span.start, message)
        };
        let raw: RawManifest = toml::from_str(source).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            vec![match e.span() {
                Some(span) => at(span, message),
                None => Diagnostic::file(&file, message),
            }]
        })?;
        let mut diags = Vec::new();

        let name = raw.name.get_ref();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            diags.push(at(
                raw.name.span(),
                format!("name `{name}` must be lowercase letters, digits and `-`"),
            ));
        } else if name != folder {
            diags.push(at(
                raw.name.span(),
                format!("name `{name}` must equal its folder name `{folder}`"),
            ));
        }
        if !is_semver(raw.version.get_ref()) {
            diags.push(at(
                raw.version.span(),
                format!(
                    "version `{}` is not a semantic version like `0.1.0`",
                    raw.version.get_ref()
                ),
            ));
        }
        if !SUPPORTED_WIT.contains(&raw.wit.get_ref().as_str()) {
            diags.push(at(
                raw.wit.span(),
                format!(
                    "wit version `{}` is not supported; this Pintu supports {}",
                    raw.wit.get_ref(),
                    supported_list()
                ),
            ));
        }
        let component = raw.component.get_ref();
        if component.is_empty()
            || component.starts_with('/')
            || component.contains('\\')
            || component
                .split('/')
                .any(|part| part == ".." || part.is_empty())
        {
            diags.push(at(
                raw.component.span(),
                format!(
                    "component `{component}` must be a relative path inside the connector's folder"
                ),
            ));
        }
        let sha = raw.sha256.get_ref();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            diags.push(at(
                raw.sha256.span(),
                format!("sha256 `{sha}` must be 64 hexadecimal digits"),
            ));
        }
        let mut events = Vec::new();
        for ev in &raw.events {
            let e = ev.get_ref();
            if e.is_empty() || e.chars().any(char::is_whitespace) {
                diags.push(at(ev.span(), format!("event type `{e}` is not a name")));
            } else if events.contains(e) {
                diags.push(at(ev.span(), format!("event type `{e}` is listed twice")));
            } else {
                events.push(e.clone());
            }
        }
        let mut sync_every = None;
        if let Some(text) = &raw.sync_every {
            match parse_duration(text.get_ref()) {
                Some(d) if d >= MIN_SYNC_EVERY => sync_every = Some(d),
                Some(_) => diags.push(at(
                    text.span(),
                    format!("sync_every `{}` is shorter than 1s", text.get_ref()),
                )),
                None => diags.push(at(
                    text.span(),
                    format!(
                        "sync_every `{}` is not a duration like `30s`, `15m` or `1h`",
                        text.get_ref()
                    ),
                )),
            }
        }
        let mut allow_hosts = Vec::new();
        for h in &raw.allow.hosts {
            match normalise_allowed(h.get_ref()) {
                Ok(n) => {
                    if !allow_hosts.contains(&n) {
                        allow_hosts.push(n);
                    }
                }
                Err(why) => diags.push(at(h.span(), why)),
            }
        }
        let mut limits = Limits::default();
        if let Some(m) = &raw.limits.memory_mib {
            match u32::try_from(*m.get_ref()) {
                Ok(v) if (1..=MAX_MEMORY_MIB).contains(&v) => limits.memory_mib = v,
                _ => diags.push(at(
                    m.span(),
                    format!(
                        "limits.memory_mib {} must be between 1 and {MAX_MEMORY_MIB}",
                        m.get_ref()
                    ),
                )),
            }
        }
        if let Some(t) = &raw.limits.timeout_ms {
            match u64::try_from(*t.get_ref()) {
                Ok(v) if (1..=MAX_TIMEOUT_MS).contains(&v) => limits.timeout_ms = v,
                _ => diags.push(at(
                    t.span(),
                    format!(
                        "limits.timeout_ms {} must be between 1 and {MAX_TIMEOUT_MS}",
                        t.get_ref()
                    ),
                )),
            }
        }
        let mut secrets = BTreeMap::new();
        for (key, var) in &raw.secrets {
            let v = var.get_ref();
            if v.is_empty() || v.contains('=') || v.contains('\0') {
                diags.push(at(
                    var.span(),
                    format!("secrets.{key}: `{v}` is not an environment variable name"),
                ));
            } else {
                secrets.insert(key.clone(), v.clone());
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(Self {
            name: raw.name.into_inner(),
            version: raw.version.into_inner(),
            wit: raw.wit.into_inner(),
            component: raw.component.into_inner(),
            sha256: raw.sha256.into_inner().to_ascii_lowercase(),
            events,
            sync_every,
            sync_every_text: raw.sync_every.map(Spanned::into_inner),
            allow_hosts,
            limits,
            secrets,
            config: raw.config,
        })
    }

    /// The location of the manifest's `sha256` value, for a mismatch found after parsing.
    pub(crate) fn sha256_diagnostic(folder: &str, source: &str, message: String) -> Diagnostic {
        let file = manifest_path(folder);
        #[derive(Deserialize)]
        struct Sha {
            sha256: Spanned<String>,
        }
        match toml::from_str::<Sha>(source) {
            Ok(s) => Diagnostic::at_offset(&file, source, s.sha256.span().start, message),
            Err(_) => Diagnostic::file(&file, message),
        }
    }
}

/// `0.1.0`, `0.2.0`, as a sentence fragment.
pub fn supported_list() -> String {
    SUPPORTED_WIT
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `MAJOR.MINOR.PATCH` with an optional `-pre` and `+build`.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !v.ends_with(['-', '+'])
}

/// `30s`, `15m`, `1h`, `1h30m`, `500ms`, `1d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num.parse().ok()?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3_600)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = tail;
    }
    Some(total)
}

/// Checks an `[allow] hosts` entry and normalises it to `scheme://host:port`.
fn normalise_allowed(entry: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("allow.hosts entry `{entry}` must be `scheme://host:port` (http or https): {why}")
    };
    let (scheme, rest) = entry.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad("no path, query or user"));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
    if host.is_empty() || port == 0 {
        return Err(bad("empty host or port 0"));
    }
    Ok(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

/// The `scheme://host:port` of an absolute URL, normalised as allowlist entries are; `Err`
/// says why the URL is not one a connector may call.
pub fn origin_of(url: &str) -> Result<String, String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("bad URL `{url}`: {e}"))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| format!("URL `{url}` is not absolute"))?
        .to_ascii_lowercase();
    let port = match (scheme.as_str(), uri.port_u16()) {
        (_, Some(p)) => p,
        ("http", None) => 80,
        ("https", None) => 443,
        _ => return Err(format!("URL `{url}` is not http or https")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("URL `{url}` has no host"))?
        .to_ascii_lowercase();
    Ok(format!("{scheme}://{host}:{port}"))
}

/// `base` with `overrides` merged over it, tables merged key by key.
pub fn merge_config(base: &toml::Table, overrides: Option<&toml::Table>) -> toml::Table {
    let mut out = base.clone();
    if let Some(over) = overrides {
        merge_into(&mut out, over);
    }
    out
}

fn merge_into(into: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge_into(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "echo"
version = "0.1.0"
wit = "0.1.0"
component = "echo.wasm"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
events = ["application.advanced"]
sync_every = "15m"
[allow]
hosts = ["HTTP://127.0.0.1:18080", "https://oss.example:443"]
[limits]
memory_mib = 64
[secrets]
user_key = "PINTU_ECHO_KEY"
[config]
base_url = "https://x"
[config.map]
a = "1"
"#;

    #[test]
    fn a_good_manifest_parses_with_defaults() {
        let m = Manifest::parse("echo", GOOD).unwrap();
        assert_eq!(m.name, "echo");
        assert_eq!(m.events, vec!["application.advanced"]);
        assert_eq!(m.sync_every, Some(Duration::from_secs(900)));
        assert_eq!(
            m.allow_hosts,
            vec!["http://127.0.0.1:18080", "https://oss.example:443"]
        );
        assert_eq!(m.limits.memory_mib, 64);
        assert_eq!(m.limits.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(m.secrets.get("user_key").unwrap(), "PINTU_ECHO_KEY");
        assert_eq!(
            m.config.get("base_url").unwrap().as_str(),
            Some("https://x")
        );
    }

    #[test]
    fn problems_are_located_in_the_manifest() {
        let text = GOOD
            .replace("name = \"echo\"", "name = \"other\"")
            .replace("wit = \"0.1.0\"", "wit = \"0.9.0\"")
            .replace(
                "\"https://oss.example:443\"",
                "\"https://oss.example/path\"",
            )
            .replace("memory_mib = 64", "memory_mib = 1024")
            .replace("\"15m\"", "\"soon\"");
        let diags = Manifest::parse("echo", &text).unwrap_err();
        let texts: Vec<String> = diags.iter().map(ToString::to_string).collect();
        assert!(texts.contains(
            &"plugins/echo/connector.toml:1:8: name `other` must equal its folder name `echo`"
                .to_owned()
        ));
        assert!(texts.iter().any(|t| t.starts_with("plugins/echo/connector.toml:3:7: wit version `0.9.0` is not supported; this Pintu supports `0.1.0`")), "{texts:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("plugins/echo/connector.toml:9:")
                    && t.contains("https://oss.example/path")),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("memory_mib 1024 must be between 1 and 256")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("sync_every `soon`")),
            "{texts:?}"
        );
        assert_eq!(diags.len(), 5, "{texts:?}");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_are_located() {
        let diags = Manifest::parse("echo", &format!("{GOOD}\n[limit]\nx = 1\n")).unwrap_err();
        assert!(
            diags[0].to_string().contains("unknown field `limit`"),
            "{diags:?}"
        );
        let diags = Manifest::parse("echo", "name = ").unwrap_err();
        assert_eq!(diags[0].file, "plugins/echo/connector.toml");
        assert_eq!(diags[0].line, 1);
        let diags = Manifest::parse("echo", "name = \"echo\"\n").unwrap_err();
        assert!(diags[0].message.contains("missing field"), "{diags:?}");
    }

    #[test]
    fn component_paths_stay_in_the_folder() {
        for bad in ["../x.wasm", "/etc/x.wasm", "a/../../x.wasm", ""] {
            let text = GOOD.replace("\"echo.wasm\"", &format!("\"{bad}\""));
            let diags = Manifest::parse("echo", &text).unwrap_err();
            assert!(
                diags[0].message.contains("relative path"),
                "{bad}: {diags:?}"
            );
        }
    }

    #[test]
    fn durations_and_origins() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("15"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(
            origin_of("http://127.0.0.1:8080/a?b").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin_of("https://OSS.example/x").unwrap(),
            "https://oss.example:443"
        );
        assert_eq!(
            origin_of("http://u:p@h.example/x").unwrap(),
            "http://h.example:80"
        );
        assert!(origin_of("ftp://h/x").is_err());
        assert!(origin_of("/relative").is_err());
    }

    #[test]
    fn overrides_merge_over_the_manifest_config() {
        let base: toml::Table = toml::from_str("a = 1\n[m]\nx = 1\ny = 2\n").unwrap();
        let over: toml::Table = toml::from_str("b = 2\n[m]\ny = 3\n").unwrap();
        let merged = merge_config(&base, Some(&over));
        assert_eq!(
            merged,
            toml::from_str::<toml::Table>("a = 1\nb = 2\n[m]\nx = 1\ny = 3\n").unwrap()
        );
    }
}
