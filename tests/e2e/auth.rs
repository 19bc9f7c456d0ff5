//! Authorization, route by route: every row of the route table (`pintu::api::routes`, the same
//! table the router is mounted from) × every kind of caller, over the real server. A handler that
//! loses its access check, or a new route whose row says less than the handler does, fails here.

use std::collections::BTreeSet;

use pintu::api::{routes, Access};
use pintu::auth::{ADMIN, ROLES};
use pintu_tests::{uji_server, Server};
use serde_json::{json, Value};

/// A caller of the matrix: what it sends as `Authorization`, and who it is.
enum Caller {
    NoToken,
    /// A header that is not `Bearer <token>` (what it is, the header).
    Malformed(&'static str, String),
    /// A well-formed token the server never issued.
    Unknown(String),
    /// An admin token that was revoked before the matrix ran.
    Revoked(String),
    Role(&'static str, String),
    /// A user's token: the user's roles count (what it is, its roles, the token).
    User(&'static str, Vec<&'static str>, String),
    /// The token of a deactivated user (who holds every role).
    Deactivated(String),
}

impl Caller {
    fn name(&self) -> String {
        match self {
            Self::NoToken => "no token".into(),
            Self::Malformed(what, _) => format!("malformed ({what})"),
            Self::Unknown(_) => "unknown token".into(),
            Self::Revoked(_) => "revoked admin token".into(),
            Self::Role(r, _) => format!("role {r}"),
            Self::User(what, ..) => format!("user {what}"),
            Self::Deactivated(_) => "deactivated user".into(),
        }
    }

    fn header(&self) -> Option<String> {
        match self {
            Self::NoToken => None,
            Self::Malformed(_, h) => Some(h.clone()),
            Self::Unknown(t)
            | Self::Revoked(t)
            | Self::Role(_, t)
            | Self::User(_, _, t)
            | Self::Deactivated(t) => Some(format!("Bearer {t}")),
        }
    }

    /// The answer the route's access row demands: `Some((status, code))` for a refusal, `None`
    /// for "let through" (any status but 401 and 403).
    fn expected(&self, access: Access) -> Option<(u16, &'static str)> {
        let allowed = match access {
            Access::Public => return None,
            // Any valid token; the handler decides by the request.
            Access::Staff => ROLES,
            Access::Roles(allowed) => allowed,
        };
        match self {
            Self::NoToken | Self::Malformed(..) => Some((401, "unauthenticated")),
            Self::Unknown(_) | Self::Revoked(_) | Self::Deactivated(_) => {
                Some((401, "invalid_token"))
            }
            Self::Role(role, _) if allowed.contains(role) => None,
            Self::User(_, roles, _) if roles.iter().any(|r| allowed.contains(r)) => None,
            Self::Role(..) | Self::User(..) => Some((403, "forbidden")),
        }
    }
}

/// A concrete path for a pattern: every `{param}` becomes `uji` (the permit the server has; for
/// admin routes an id that names no release or token, so an allowed call changes nothing).
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "uji"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn call(s: &Server, method: &str, path: &str, caller: &Caller) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let has_body = [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
    ]
    .contains(&method);
    let mut req = s.http.request(method, s.url(path));
    if let Some(h) = caller.header() {
        req = req.header("authorization", h);
    }
    if has_body {
        req = req.header("content-type", "application/json").body("{}");
    }
    pintu_tests::into_json(req.send().await.unwrap()).await
}

async fn new_token(s: &Server, role: &str) -> (String, String) {
    let (status, v) = s
        .admin_post(
            "/admin/tokens",
            json!({"role": role, "label": "auth matrix"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    (
        v["token"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

/// A user with `roles` in every permit type, and a token of it.
async fn new_user(s: &Server, username: &str, roles: &[&str]) -> String {
    let (status, v) = s
        .admin_post(
            "/admin/users",
            json!({"username": username, "name": username, "roles": roles, "permits": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = s
        .admin_post(&format!("/admin/users/{username}/tokens"), json!({}))
        .await;
    assert_eq!(status, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_its_table_row_says() {
    let (_dir, s) = uji_server("1");
    let table = routes();

    // The routes the issue named are in the table, admin-only: the table cannot quietly shrink.
    let admin_only: BTreeSet<(String, &str)> = table
        .iter()
        .filter(|r| r.access == Access::Roles(&[ADMIN]))
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    for (method, path) in [
        ("GET", "/admin/releases"),
        ("POST", "/admin/releases/{id}/activate"),
        ("GET", "/admin/reloads"),
        ("POST", "/admin/reload"),
        ("GET", "/admin/decisions"),
        ("GET", "/admin/audit"),
        ("POST", "/admin/tokens"),
        ("DELETE", "/admin/tokens/{id}"),
        ("POST", "/admin/users"),
        ("GET", "/admin/users"),
        ("GET", "/admin/users/{username}"),
        ("PATCH", "/admin/users/{username}"),
        ("POST", "/admin/users/{username}/tokens"),
        ("GET", "/admin/users/{username}/tokens"),
        ("GET", "/admin/outbox"),
        ("POST", "/admin/outbox/{id}/retry"),
    ] {
        assert!(
            admin_only.contains(&(method.to_owned(), path)),
            "{method} {path} is not in the route table as admin-only"
        );
    }

    let (revoked, revoked_id) = new_token(&s, ADMIN).await;
    assert_eq!(s.get_as("/admin/audit", &revoked).await.0, 200);
    let r = s
        .http
        .delete(s.url(&format!("/admin/tokens/{revoked_id}")))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    let mut callers = vec![
        Caller::NoToken,
        Caller::Malformed("basic auth", "Basic dXNlcjpwYXNz".into()),
        // The admin's own secret without the `Bearer` scheme is not a credential.
        Caller::Malformed("no scheme", s.admin_token.clone()),
        Caller::Unknown(format!("pintu_{}", "0".repeat(64))),
        Caller::Revoked(revoked),
    ];
    for role in ROLES {
        callers.push(Caller::Role(role, new_token(&s, role).await.0));
    }
    let staff: Vec<&'static str> = ROLES.iter().copied().filter(|r| *r != ADMIN).collect();
    callers.push(Caller::User(
        "admin",
        vec![ADMIN],
        new_user(&s, "matrix-admin", &[ADMIN]).await,
    ));
    callers.push(Caller::User(
        "in every other role",
        staff.clone(),
        new_user(&s, "matrix-staff", &staff).await,
    ));
    let gone = new_user(&s, "matrix-gone", ROLES).await;
    let r = s
        .http
        .patch(s.url("/admin/users/matrix-gone"))
        .bearer_auth(&s.admin_token)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    let (status, v) = pintu_tests::into_json(r).await;
    assert_eq!(status, 200, "{v}");
    callers.push(Caller::Deactivated(gone));

    let mut failures = Vec::new();
    let mut calls = 0;
    for route in &table {
        let method = route.method.as_str();
        let path = concrete(route.path);
        let mut row = Vec::new();
        for caller in &callers {
            let (status, v) = call(&s, method, &path, caller).await;
            calls += 1;
            let body: String = v.to_string().chars().take(160).collect();
            row.push(status.to_string());
            let code = v["error"]["code"].as_str().unwrap_or("");
            match caller.expected(route.access) {
                Some((want, want_code)) if (status, code) != (want, want_code) => {
                    failures.push(format!(
                        "{method} {} as {}: want {want} {want_code}, got {status} {body}",
                        route.path,
                        caller.name()
                    ));
                }
                None if status == 401 || status == 403 => failures.push(format!(
                    "{method} {} as {}: should be let through, got {status} {body}",
                    route.path,
                    caller.name()
                )),
                _ => {}
            }
        }
        println!("{method:6} {:32} {}", route.path, row.join(" "));
    }
    println!(
        "{} routes × {} callers ({}) = {calls} calls",
        table.len(),
        callers.len(),
        callers
            .iter()
            .map(Caller::name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_revoked_token_stops_at_once_is_audited_and_stays_revoked() {
    let (_dir, s) = uji_server("1");
    let (token, id) = new_token(&s, ADMIN).await;
    assert_eq!(s.get_as("/admin/releases", &token).await.0, 200);

    let delete = |bearer: String, id: String| {
        let req = s
            .http
            .delete(s.url(&format!("/admin/tokens/{id}")))
            .bearer_auth(bearer);
        async move { pintu_tests::into_json(req.send().await.unwrap()).await }
    };
    let (status, body) = delete(s.admin_token.clone(), id.clone()).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, json!(""), "204 has no body");

    let (status, v) = s.get_as("/admin/releases", &token).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    // A second revocation, or an id nobody has, names the problem.
    let (status, v) = delete(s.admin_token.clone(), id.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_token")),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().unwrap().contains(&id), "{v}");

    let (_, v) = s.admin_get("/admin/audit").await;
    let revocations: Vec<&Value> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "revoke_token")
        .collect();
    assert_eq!(revocations.len(), 1, "{v}");
    assert_eq!(revocations[0]["detail"]["id"], id.as_str());
    assert_eq!(revocations[0]["detail"]["role"], ADMIN);

    // The revocation is durable: after a restart the token is still refused, the admin is not.
    let (rules, data, admin) = (s.rules.clone(), s.data.clone(), s.admin_token.clone());
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(s.get_as("/admin/releases", &token).await.0, 401);
    assert_eq!(s.get_as("/admin/releases", &admin).await.0, 200);
}

/// An office that lists its own roles: tokens take exactly those (and `admin`), over the API and
/// from the command line; a default role the office left out is refused like any unknown one.
#[tokio::test]
async fn the_office_configuration_lists_the_roles_tokens_may_carry() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let data = dir.path().join("data");
    pintu_tests::write_uji(&rules, "0.1");
    let config = dir.path().join("pintu.toml");
    std::fs::write(&config, "roles = [\"front_office\", \"bendahara\"]\n").unwrap();
    let config = config.to_str().unwrap();

    // From the command line (before the server holds the database).
    let create = |role: &str| {
        pintu_tests::run_pintu(
            &[
                "token",
                "create",
                "--role",
                role,
                "--data",
                data.to_str().unwrap(),
                "--config",
                config,
            ],
            dir.path(),
        )
    };
    let (code, token, err) = create("bendahara");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = create("tim_teknis");
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown role `tim_teknis` (expected one of: admin, front_office, bendahara)"),
        "{err}"
    );

    let s = Server::start(&rules, &data, &["--config", config]);
    // The server knows the command-line token and its role: an admin route is forbidden to
    // it (403), not refused as an unknown token (401).
    let (status, v) = s.get_as("/admin/releases", token.trim()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (status, v) = s
        .admin_post(
            "/admin/tokens",
            json!({"role": "bendahara", "label": "kas"}),
        )
        .await;
    assert_eq!(
        (status, v["role"].as_str()),
        (200, Some("bendahara")),
        "{v}"
    );
    let (status, v) = s
        .admin_post("/admin/tokens", json!({"role": "back_office"}))
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_body")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown role `back_office`"),
        "{v}"
    );
    let (status, v) = s
        .admin_post("/admin/tokens", json!({"role": "admin"}))
        .await;
    assert_eq!(status, 200, "{v}");
}
