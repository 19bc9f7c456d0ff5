//! The committed sample connectors (`plugins/oss-rba`, `plugins/simbg`) load as the release
//! loads them (manifest as committed, component checked against its sha256, `describe` agreeing)
//! and answer their inbound routes through the host. Their behaviour against OSS and SIMBG is
//! tested end to end in `tests/e2e/oss_rba.rs` and `tests/e2e/simbg.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use pintu::connectors::{CallEnv, ConnectorHost, Header, InboundRequest, Secrets};
use serde_json::Value;

fn files(name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(name);
    let manifest = std::fs::read(dir.join("connector.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(std::str::from_utf8(&manifest).unwrap()).unwrap();
    let component = parsed["component"].as_str().unwrap().to_owned();
    let bytes = std::fs::read(dir.join(&component)).unwrap();
    BTreeMap::from([("connector.toml".to_owned(), manifest), (component, bytes)])
}

#[test]
fn the_sample_connectors_load_as_committed() {
    let host = ConnectorHost::new(None).unwrap();
    let oss = host
        .load("oss-rba", &files("oss-rba"), None)
        .unwrap_or_else(|d| panic!("oss-rba does not load: {d:?}"));
    assert_eq!(oss.version(), "0.1.0");
    assert!(oss.manifest().events.contains(&"permit.issued".to_owned()));
    let simbg = host
        .load("simbg", &files("simbg"), None)
        .unwrap_or_else(|d| panic!("simbg does not load: {d:?}"));
    assert!(simbg.manifest().sync_every.is_some());
    assert!(simbg.manifest().events.is_empty());
}

#[test]
fn receive_nib_with_a_wrong_token_is_refused_without_actions() {
    let host = ConnectorHost::new(None).unwrap();
    let oss = host.load("oss-rba", &files("oss-rba"), None).unwrap();
    let mut secrets = Secrets::default();
    secrets.insert("oss-rba", "username", "u");
    secrets.insert("oss-rba", "password", "p");
    let env = CallEnv {
        secrets: Arc::new(secrets),
        utc_offset_minutes: 420,
        ..CallEnv::detached()
    };
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/oss/receive_nib.json"),
    )
    .unwrap();
    let reply = oss
        .handle_inbound(
            &env,
            InboundRequest {
                method: "POST".into(),
                path: "receiveNIB".into(),
                query: String::new(),
                headers: vec![Header {
                    name: "Token".into(),
                    value: "0123456789abcdef0123456789abcdef01234567".into(),
                }],
                body,
            },
        )
        .unwrap();
    assert_eq!(reply.response.status, 401);
    assert!(reply.actions.is_empty());
    let answer: Value = serde_json::from_slice(&reply.response.body).unwrap();
    assert_eq!(answer["responreceiveNIB"]["status"], "2");
    // Without secrets the office is not set up: 503, nothing done.
    let bare = oss
        .handle_inbound(
            &CallEnv::detached(),
            InboundRequest {
                method: "POST".into(),
                path: "receiveNIB".into(),
                query: String::new(),
                headers: Vec::new(),
                body: br#"{"dataNIB": {"nib": "1"}}"#.to_vec(),
            },
        )
        .unwrap();
    assert_eq!(bare.response.status, 503);
    assert!(bare.actions.is_empty());
}
