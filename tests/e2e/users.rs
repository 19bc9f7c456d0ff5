//! Users over the real server: the `/admin/users*` routes, user tokens, and what a change of a
//! user does to its tokens at the very next request; `pintu user ...` with the server stopped.

use pintu_tests::{run_pintu, uji_server, write_uji, Server};
use serde_json::{json, Value};

async fn patch_as(s: &Server, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = s
        .http
        .patch(s.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    pintu_tests::into_json(r).await
}

async fn admin_patch(s: &Server, path: &str, body: Value) -> (u16, Value) {
    patch_as(s, path, &s.admin_token, body).await
}

fn error_of(v: &Value) -> (&str, &str) {
    (
        v["error"]["code"].as_str().unwrap_or(""),
        v["error"]["message"].as_str().unwrap_or(""),
    )
}

/// The audit entries with `action`, oldest first.
async fn audit_of(s: &Server, action: &str) -> Vec<Value> {
    let (status, v) = s.admin_get("/admin/audit?limit=1000").await;
    assert_eq!(status, 200, "{v}");
    let mut entries: Vec<Value> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == action)
        .cloned()
        .collect();
    entries.reverse();
    entries
}

#[tokio::test]
async fn an_admin_creates_lists_shows_and_changes_users() {
    let (_dir, s) = uji_server("1");
    let siti = json!({
        "username": "siti",
        "name": "Siti Rahmawati",
        "nip": "198503142010012003",
        "roles": ["front_office"],
        "permits": ["pbg", "sip-dokter"],
    });
    let (status, created) = s.admin_post("/admin/users", siti.clone()).await;
    assert_eq!(status, 201, "{created}");
    for (field, want) in [
        ("username", json!("siti")),
        ("name", json!("Siti Rahmawati")),
        ("nip", json!("198503142010012003")),
        ("roles", json!(["front_office"])),
        ("permits", json!(["pbg", "sip-dokter"])),
        ("active", json!(true)),
    ] {
        assert_eq!(created[field], want, "{field}: {created}");
    }
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());

    // The username is taken; the first user is unchanged.
    let mut again = siti.clone();
    again["name"] = json!("Siti Lain");
    let (status, v) = s.admin_post("/admin/users", again).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(error_of(&v), ("conflict", "user `siti` already exists"));

    // Every user of the office (a type not in the release yet is allowed: it may come later).
    let (status, v) = s
        .admin_post(
            "/admin/users",
            json!({"username": "budi.s", "name": "Budi", "roles": ["admin", "kepala_dinas"],
                   "permits": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["nip"], Value::Null);
    let (status, v) = s.admin_get("/admin/users").await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["budi.s", "siti"]);

    let (status, v) = s.admin_get("/admin/users/siti").await;
    assert_eq!((status, &v), (200, &created));
    let (status, v) = s.admin_get("/admin/users/nobody").await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(error_of(&v), ("not_found", "no user `nobody`"));

    // A PATCH changes the fields it names, nothing else.
    let (status, v) = admin_patch(
        &s,
        "/admin/users/siti",
        json!({"roles": ["front_office", "back_office"], "name": "Siti R."}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["roles"], json!(["front_office", "back_office"]));
    assert_eq!(v["name"], "Siti R.");
    assert_eq!(v["permits"], created["permits"]);
    assert_eq!(v["nip"], created["nip"]);
    assert_eq!(v["created_at"], created["created_at"]);
    assert_ne!(v["updated_at"], created["updated_at"]);
    assert_eq!(s.admin_get("/admin/users/siti").await.1, v);
    let (status, v) = admin_patch(&s, "/admin/users/nobody", json!({"active": false})).await;
    assert_eq!((status, error_of(&v).0), (404, "not_found"), "{v}");

    // The audit log has each change with its actor (the admin's role token) and what changed.
    let admin_actor = {
        let created = audit_of(&s, "user_created").await;
        assert_eq!(created.len(), 2, "{created:?}");
        assert_eq!(created[0]["detail"]["username"], "siti");
        assert_eq!(created[0]["detail"]["roles"], json!(["front_office"]));
        created[0]["actor"].as_str().unwrap().to_owned()
    };
    assert!(admin_actor.starts_with("token:"), "{admin_actor}");
    let updated = audit_of(&s, "user_updated").await;
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(updated[0]["actor"], admin_actor.as_str());
    assert_eq!(
        updated[0]["detail"],
        json!({"username": "siti", "changed": {
            "name": {"from": "Siti Rahmawati", "to": "Siti R."},
            "roles": {"from": ["front_office"], "to": ["front_office", "back_office"]},
        }})
    );
}

#[tokio::test]
async fn a_bad_field_is_a_422_naming_it_and_nothing_is_stored() {
    let (_dir, s) = uji_server("1");
    let good = json!({"username": "rina", "name": "Rina", "roles": ["tim_teknis"],
                      "permits": ["pbg"]});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    for (body, wanted) in [
        (
            with("username", json!("Rina Wati")),
            "`username` must be 1 to 64 of",
        ),
        (with("username", json!("")), "`username` must be 1 to 64 of"),
        (
            with("username", json!("cli")),
            "`username` must not be `cli`",
        ),
        (with("name", json!("  ")), "`name` must not be empty"),
        (
            with("nip", json!("12345")),
            "`nip` must be 18 digits (got `12345`)",
        ),
        (
            with("roles", json!([])),
            "`roles` must name at least one role",
        ),
        (
            with("roles", json!(["kasir"])),
            "`roles` names unknown role `kasir` (expected one of: admin, front_office,",
        ),
        (
            with("roles", json!(["admin", "admin"])),
            "`roles` lists `admin` twice",
        ),
        (
            with("permits", json!(["*", "pbg"])),
            "`permits` mixes `*` (every permit type) with permit type ids",
        ),
        (
            with("permits", json!(["PBG"])),
            "`permits` names `PBG`: a permit type id is lowercase",
        ),
        (with("active", json!(false)), "unknown field `active`"),
        (
            json!({"username": "rina", "roles": ["admin"], "permits": ["*"]}),
            "missing field `name`",
        ),
        (
            with("roles", json!("admin")),
            "request body: `roles`: invalid type: string \"admin\", expected a sequence",
        ),
    ] {
        let (status, v) = s.admin_post("/admin/users", body.clone()).await;
        let (code, message) = error_of(&v);
        assert_eq!((status, code), (422, "invalid_body"), "{body}: {v}");
        assert!(
            message.contains(wanted),
            "{body}: want {wanted:?} in {message:?}"
        );
    }
    let (_, v) = s.admin_get("/admin/users").await;
    assert_eq!(v["users"], json!([]), "nothing was stored");

    // A PATCH with a bad field changes none of the fields it names.
    assert_eq!(s.admin_post("/admin/users", good).await.0, 201);
    let (status, v) = admin_patch(
        &s,
        "/admin/users/rina",
        json!({"name": "Rina Baru", "permits": ["pbg", "pbg"]}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(error_of(&v).1, "`permits` lists `pbg` twice");
    assert_eq!(s.admin_get("/admin/users/rina").await.1["name"], "Rina");
    let (status, v) = admin_patch(&s, "/admin/users/rina", json!({"username": "x"})).await;
    assert_eq!(status, 422, "{v}");
    assert!(error_of(&v).1.contains("unknown field `username`"), "{v}");
    assert!(audit_of(&s, "user_updated").await.is_empty());
}

#[tokio::test]
async fn a_user_s_token_follows_the_user_at_the_next_request() {
    let (_dir, s) = uji_server("1");
    let (status, v) = s
        .admin_post(
            "/admin/users",
            json!({"username": "dewi", "name": "Dewi", "roles": ["front_office"],
                   "permits": ["pbg"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, t) = s
        .admin_post("/admin/users/dewi/tokens", json!({"label": "loket 2"}))
        .await;
    assert_eq!(status, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_owned();
    let id = t["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pintu_"), "{t}");
    assert_eq!(
        (t["user"].as_str(), t["label"].as_str()),
        (Some("dewi"), Some("loket 2"))
    );
    let (status, v) = s.admin_post("/admin/users/nobody/tokens", json!({})).await;
    assert_eq!((status, error_of(&v).0), (404, "not_found"), "{v}");

    // The user's tokens: ids and labels, never a secret or a hash.
    let (_, second) = s.admin_post("/admin/users/dewi/tokens", json!({})).await;
    let (status, v) = s.admin_get("/admin/users/dewi/tokens").await;
    assert_eq!(status, 200, "{v}");
    let listed = v["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{v}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["label"], "loket 2");
    assert_eq!(listed[1]["id"], second["id"]);
    let text = v.to_string();
    assert!(
        !text.contains(&token) && !text.contains("hash") && !text.contains("\"token\""),
        "{v}"
    );

    // A front office user is not an admin: refused by role, naming the role.
    let (status, v) = s.get_as("/admin/audit", &token).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(error_of(&v), ("forbidden", "role `admin` required"));

    // Given the admin role, the same token passes at the next request, and acts as `dewi`.
    let (status, v) = admin_patch(
        &s,
        "/admin/users/dewi",
        json!({"roles": ["front_office", "admin"]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(s.get_as("/admin/audit", &token).await.0, 200);
    let (status, v) = s
        .post_as(
            "/admin/users",
            &token,
            json!({"username": "eko", "name": "Eko", "roles": ["bendahara"], "permits": ["*"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let created = audit_of(&s, "user_created").await;
    assert_eq!(created.last().unwrap()["actor"], "dewi");
    let (status, v) = s.post_as("/admin/reload", &token, json!({})).await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = s.admin_get("/admin/reloads?limit=1").await;
    assert_eq!(v["reloads"][0]["trigger"], "dewi", "{v}");
    assert_eq!(
        audit_of(&s, "reload").await.last().unwrap()["actor"],
        "dewi"
    );

    // Deactivated: every token of the user stops at once (401, naming why); back when reactivated.
    let (status, v) = admin_patch(&s, "/admin/users/dewi", json!({"active": false})).await;
    assert_eq!((status, &v["active"]), (200, &json!(false)), "{v}");
    for t in [&token, second["token"].as_str().unwrap()] {
        let (status, v) = s.get_as("/admin/audit", t).await;
        assert_eq!(status, 401, "{v}");
        let (code, message) = error_of(&v);
        assert_eq!(code, "invalid_token");
        assert!(message.contains("user `dewi` is deactivated"), "{message}");
    }
    // A deactivated admin cannot reactivate itself.
    let (status, _) = patch_as(&s, "/admin/users/dewi", &token, json!({"active": true})).await;
    assert_eq!(status, 401);
    assert_eq!(
        admin_patch(&s, "/admin/users/dewi", json!({"active": true}))
            .await
            .0,
        200
    );
    assert_eq!(s.get_as("/admin/audit", &token).await.0, 200);

    // Revoked by its id like any token: that one stops, the user's other one keeps working.
    let r = s
        .http
        .delete(s.url(&format!("/admin/tokens/{id}")))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (status, v) = s.get_as("/admin/audit", &token).await;
    assert_eq!((status, error_of(&v).0), (401, "invalid_token"), "{v}");
    assert_eq!(
        s.get_as("/admin/audit", second["token"].as_str().unwrap())
            .await
            .0,
        200
    );
    let (_, v) = s.admin_get("/admin/users/dewi/tokens").await;
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1, "{v}");

    // Every change is in the audit log.
    let tokens = audit_of(&s, "user_token_created").await;
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(
        tokens[0]["detail"],
        json!({"user": "dewi", "id": id, "label": "loket 2"})
    );
    let revoked = audit_of(&s, "revoke_token").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["detail"]["user"], "dewi");
    let updates: Vec<Value> = audit_of(&s, "user_updated")
        .await
        .into_iter()
        .map(|a| a["detail"]["changed"].clone())
        .collect();
    assert_eq!(
        updates,
        [
            json!({"roles": {"from": ["front_office"], "to": ["front_office", "admin"]}}),
            json!({"active": {"from": true, "to": false}}),
            json!({"active": {"from": false, "to": true}}),
        ]
    );

    // Users and their tokens are durable.
    let (rules, data, admin) = (s.rules.clone(), s.data.clone(), s.admin_token.clone());
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&rules, &data, &[]);
    assert_eq!(
        s.get_as("/admin/audit", second["token"].as_str().unwrap())
            .await
            .0,
        200
    );
    assert_eq!(s.get_as("/admin/audit", &token).await.0, 401);
    assert_eq!(
        s.get_as("/admin/users/dewi", &admin).await.1["active"],
        true
    );
}

/// `pintu user add` and `pintu user token`, with the server stopped: audited as `cli`.
#[tokio::test]
async fn users_and_their_tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let data = dir.path().join("data");
    write_uji(&rules, "0.1");
    let data_arg = data.to_str().unwrap().to_owned();
    let pintu = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data", data_arg.as_str()]);
        run_pintu(&all, dir.path())
    };
    let add = [
        "user",
        "add",
        "siti",
        "--name",
        "Siti Rahmawati",
        "--role",
        "front_office",
        "--role",
        "admin",
        "--permit",
        "pbg",
        "sip-dokter",
    ];
    let (code, _, err) = pintu(&add);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("created user siti"), "{err}");
    let (code, _, err) = pintu(&add);
    assert_eq!(code, 1);
    assert!(err.contains("user `siti` already exists"), "{err}");
    let (code, _, err) = pintu(&[
        "user", "add", "rudi", "--name", "Rudi", "--role", "raja", "--permit", "*",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("`roles` names unknown role `raja`"), "{err}");
    let (code, _, err) = pintu(&["user", "token", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("no user `nobody`"), "{err}");
    let (code, token, err) = pintu(&["user", "token", "siti", "--label", "laptop"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("for user siti"), "{err}");
    let token = token.trim().to_owned();

    let s = Server::start(&rules, &data, &[]);
    // An admin user with a token can sign in: no first admin token is written.
    assert!(!data.join("admin.token").exists(), "{}", s.log());
    let (status, v) = s.get_as("/admin/users/siti", &token).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["roles"], json!(["front_office", "admin"]));
    assert_eq!(v["permits"], json!(["pbg", "sip-dokter"]));
    let (_, v) = s.get_as("/admin/audit", &token).await;
    let by_cli: Vec<&str> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == "cli")
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(by_cli, ["user_token_created", "user_created"], "{v}");

    // While the server holds the database, the command says what to use instead.
    let (code, _, err) = pintu(&["user", "token", "siti"]);
    assert_eq!(code, 1);
    assert!(err.contains("POST /admin/users/USERNAME/tokens"), "{err}");
}

/// An office with a role of its own (`roles` in `pintu.toml`) names it in a flow; a user
/// holding it acts at that step. And a user's permit types, like its roles, follow a PATCH at
/// the next request.
#[tokio::test]
async fn an_office_s_own_role_acts_at_its_step_and_a_scope_change_applies_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_uji(&rules, "0.1");
    let permit = rules.join("uji/permit.toml");
    let mut toml = std::fs::read_to_string(&permit).unwrap();
    toml.push_str(
        "\n[[flow]]\nstep = \"pendaftaran\"\nlabel = \"Pendaftaran\"\nrole = \"front_office\"\n\
         \n[[flow]]\nstep = \"verifikasi\"\nlabel = \"Verifikasi\"\nrole = \"verifikator\"\n\
         \n[numbering]\nregistration = \"REG/UJI/{YYYY}/{NNNN}\"\n",
    );
    std::fs::write(&permit, toml).unwrap();
    let config = dir.path().join("pintu.toml");
    std::fs::write(&config, "roles = [\"front_office\", \"verifikator\"]\n").unwrap();
    let s = Server::start(
        &rules,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    assert!(s.release().await.is_some(), "{}", s.log());

    let user = |username: &'static str, role: &'static str, permits: Value| {
        let s = &s;
        async move {
            let body = json!({"username": username, "name": username, "roles": [role],
                              "permits": permits});
            let (status, v) = s.admin_post("/admin/users", body).await;
            assert_eq!(status, 201, "{v}");
            let (status, v) = s
                .admin_post(&format!("/admin/users/{username}/tokens"), json!({}))
                .await;
            assert_eq!(status, 201, "{v}");
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let fo = user("fo", "front_office", json!(["lain"])).await;
    let verifikator = user("vera", "verifikator", json!(["uji"])).await;

    // Out of scope, then in scope after a PATCH of the user's permit types.
    let application = json!({"permit": "uji", "applicant": {"name": "Ani"}, "data": {"x": "5"}});
    let (status, v) = s
        .post_as("/v1/applications", &fo, application.clone())
        .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        error_of(&v),
        ("forbidden", "no access to permit type `uji`")
    );
    let (status, v) = admin_patch(&s, "/admin/users/fo", json!({"permits": ["lain", "uji"]})).await;
    assert_eq!(status, 200, "{v}");
    let (status, app) = s.post_as("/v1/applications", &fo, application).await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().unwrap().to_owned();
    let transitions = format!("/v1/applications/{id}/transitions");
    let advance = |app: &Value| json!({"action": "advance", "version": app["version"]});
    let (status, app) = s.post_as(&transitions, &fo, advance(&app)).await;
    assert_eq!(
        (status, app["step"].as_str()),
        (200, Some("verifikasi")),
        "{app}"
    );

    // The office's own role gets past the route's door and acts at its step.
    let (status, app) = s.post_as(&transitions, &verifikator, advance(&app)).await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["status"], "completed", "{app}");
    assert_eq!(
        app["history"].as_array().unwrap().last().unwrap()["by"],
        "vera",
        "{app}"
    );
    let (status, v) = s
        .get_as(&format!("/v1/applications/{id}"), &verifikator)
        .await;
    assert_eq!(status, 200, "{v}");
}
