//! `/openapi.json` against the server's real answers: each request's answer must match the
//! schema the document gives for its route and status, and carry no field the document does not
//! name, so the document cannot drift from what the handlers send.

use super::*;

/// The schema of `method path`'s answer with `status`, from the document.
fn answer_schema<'a>(doc: &'a Value, method: &Method, path: &str, status: StatusCode) -> &'a Value {
    let method = method.as_str().to_ascii_lowercase();
    let operation = &doc["paths"][path][&method];
    assert!(
        !operation.is_null(),
        "{method} {path} is not in the document"
    );
    let response = &operation["responses"][status.as_str()];
    assert!(
        !response.is_null(),
        "{method} {path}: status {status} is not documented"
    );
    &response["content"]["application/json"]["schema"]
}

/// Every way `value` departs from `schema` (OpenAPI 3.1's JSON Schema, the parts the document
/// uses), with where. Stricter than JSON Schema in one way: an object field that an object
/// schema with `properties` does not name is a problem (an undocumented field).
fn departures(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let target = reference
            .strip_prefix('#')
            .and_then(|p| doc.pointer(p))
            .unwrap_or_else(|| panic!("{at}: dangling $ref {reference}"));
        return departures(doc, target, value, at);
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let all: Vec<Vec<String>> = choices
            .iter()
            .map(|c| departures(doc, c, value, at))
            .collect();
        return if all.iter().any(Vec::is_empty) {
            Vec::new()
        } else {
            vec![format!("{at}: matches no `oneOf` choice: {all:?}")]
        };
    }
    let mut problems = Vec::new();
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let is = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            problems.push(format!("{at}: {value} is not of type {types:?}"));
            return problems;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                problems.push(format!("{at}: required field `{name}` is missing"));
            }
        }
        for (name, field) in object {
            match properties.get(name) {
                Some(s) => problems.extend(departures(doc, s, field, &format!("{at}.{name}"))),
                None => problems.push(format!(
                    "{at}: field `{name}` is not in the document's schema"
                )),
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            problems.extend(departures(doc, schema, item, &format!("{at}[{i}]")));
        }
    }
    problems
}

/// A request and the status it must get: (method, route, concrete path, token, body, status).
type Case<'a> = (
    Method,
    &'a str,
    String,
    Option<&'a str>,
    Option<Value>,
    StatusCode,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_schema_the_document_gives_it() {
    let api = Api::start().await;

    // The document itself: public, JSON.
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let (_, doc) = api.send(Method::GET, "/openapi.json", None, None).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{doc}"
    );

    let store = api.store.clone();
    let (clerk, _) = tokio::task::spawn_blocking(move || {
        auth::create_token(&store, &Roles::default(), "front_office", "loket")
            .map_err(|e| e.to_string())
            .unwrap()
    })
    .await
    .unwrap();
    let admin = Some(api.admin.as_str());
    let (_, health) = api.send(Method::GET, "/health", None, None).await;
    let release = health["release"].as_str().unwrap().to_owned();
    let activate = format!("/admin/releases/{release}/activate");

    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/health",
            "/health".into(),
            None,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/permits",
            "/v1/permits".into(),
            None,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/permits/{id}",
            "/v1/permits/uji".into(),
            None,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/v1/permits/{id}",
            "/v1/permits/nope".into(),
            None,
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/permits/{id}/validate",
            "/v1/permits/uji/validate".into(),
            None,
            Some(json!({"data": {"x": "2"}})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/permits/{id}/validate",
            "/v1/permits/uji/validate".into(),
            None,
            Some(json!({"data": {"x": "-1"}})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/permits/{id}/validate",
            "/v1/permits/uji/validate".into(),
            None,
            Some(json!({"daten": {}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/permits/{id}/levy",
            "/v1/permits/uji/levy".into(),
            None,
            Some(json!({"data": {"x": "2"}})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/permits/{id}/levy",
            "/v1/permits/uji/levy".into(),
            None,
            Some(json!({"data": {"x": "-1"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/admin/releases",
            "/admin/releases".into(),
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/admin/releases",
            "/admin/releases".into(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Method::GET,
            "/admin/releases",
            "/admin/releases".into(),
            Some(&clerk),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/admin/releases",
            "/admin/releases?limit=0".into(),
            admin,
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/admin/reloads",
            "/admin/reloads".into(),
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/admin/reload",
            "/admin/reload".into(),
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/admin/releases/{id}/activate",
            activate,
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/admin/releases/{id}/activate",
            "/admin/releases/0000000000000000/activate".into(),
            admin,
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/admin/decisions",
            "/admin/decisions".into(),
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/admin/tokens",
            "/admin/tokens".into(),
            admin,
            Some(json!({"role": "back_office", "label": "entri"})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/admin/tokens",
            "/admin/tokens".into(),
            admin,
            Some(json!({"role": "root"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::DELETE,
            "/admin/tokens/{id}",
            "/admin/tokens/nope".into(),
            admin,
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/admin/users",
            "/admin/users".into(),
            admin,
            Some(
                json!({"username": "sari", "name": "Sari", "nip": "198001012005011001",
                        "roles": ["front_office"], "permits": ["uji"]}),
            ),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/admin/users",
            "/admin/users".into(),
            admin,
            Some(
                json!({"username": "sari", "name": "Sari", "roles": ["front_office"],
                        "permits": ["*"]}),
            ),
            StatusCode::CONFLICT,
        ),
        (
            Method::POST,
            "/admin/users",
            "/admin/users".into(),
            admin,
            Some(
                json!({"username": "Budi!", "name": "Budi", "roles": ["front_office"],
                        "permits": ["*"]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/admin/users",
            "/admin/users".into(),
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/admin/users/{username}",
            "/admin/users/sari".into(),
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/admin/users/{username}",
            "/admin/users/nobody".into(),
            admin,
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "/admin/users/{username}",
            "/admin/users/sari".into(),
            admin,
            Some(json!({"roles": ["front_office", "back_office"], "active": true})),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/admin/users/{username}/tokens",
            "/admin/users/sari/tokens".into(),
            admin,
            Some(json!({"label": "loket 1"})),
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/admin/users/{username}/tokens",
            "/admin/users/sari/tokens".into(),
            admin,
            None,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/admin/audit",
            "/admin/audit".into(),
            admin,
            None,
            StatusCode::OK,
        ),
    ];
    let mut problems = Vec::new();
    for (method, route, path, token, body, expected) in cases {
        let (status, answer) = api.send(method.clone(), &path, token, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        let schema = answer_schema(&doc, &method, route, status);
        problems.extend(departures(
            &doc,
            schema,
            &answer,
            &format!("{method} {path} {status}"),
        ));
    }
    assert!(
        problems.is_empty(),
        "answers that differ from /openapi.json:\n{}",
        problems.join("\n")
    );
}

/// A role token (every permit type in scope).
async fn token(api: &Api, role: &'static str) -> String {
    let store = api.store.clone();
    tokio::task::spawn_blocking(move || {
        auth::create_token(&store, &Roles::default(), role, role)
            .map_err(|e| e.to_string())
            .unwrap()
            .0
    })
    .await
    .unwrap()
}

/// Sends requests and collects how each answer departs from the schema of its route and status.
struct Checker<'a> {
    api: &'a Api,
    doc: Value,
    problems: Vec<String>,
}

impl Checker<'_> {
    async fn check(
        &mut self,
        method: Method,
        route: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Value {
        let (status, answer) = self.api.send(method.clone(), path, token, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        let schema = answer_schema(&self.doc, &method, route, status);
        let at = format!("{method} {path} {status}");
        self.problems
            .extend(departures(&self.doc, schema, &answer, &at));
        answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_and_the_sample_rules_answer_as_the_document_says() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let api = Api::start_on(tempfile::tempdir().unwrap(), rules.clone()).await;
    let (_, doc) = api.send(Method::GET, "/openapi.json", None, None).await;
    let front = token(&api, "front_office").await;
    let back = token(&api, "back_office").await;
    let admin = api.admin.clone();
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(rules.join("pbg/tests/a_hunian_tidak_sederhana.json")).unwrap(),
    )
    .unwrap();
    let data = fixture["data"].clone();
    let mut c = Checker {
        api: &api,
        doc,
        problems: Vec::new(),
    };

    // The sample permit types: a flow with guards and effects, numbering with a kind override.
    c.check(
        Method::GET,
        "/v1/permits/{id}",
        "/v1/permits/pbg",
        None,
        None,
        StatusCode::OK,
    )
    .await;
    c.check(
        Method::POST,
        "/v1/permits/{id}/levy",
        "/v1/permits/pbg/levy",
        None,
        Some(json!({"data": data})),
        StatusCode::OK,
    )
    .await;

    let new = |nik: Option<&str>, draft: bool| {
        let mut applicant = json!({"name": "Budi Santoso", "address": "Jl. Merdeka 1"});
        if let Some(nik) = nik {
            applicant["nik"] = json!(nik);
        }
        json!({"permit": "pbg", "kind": "perpanjangan", "applicant": applicant, "data": data, "draft": draft})
    };
    let created = c
        .check(
            Method::POST,
            "/v1/applications",
            "/v1/applications",
            Some(&front),
            Some(new(Some("1871010101800001"), false)),
            StatusCode::CREATED,
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let at = |tail: &str| format!("/v1/applications/{id}{tail}");
    c.check(
        Method::POST,
        "/v1/applications",
        "/v1/applications",
        Some(&front),
        Some(json!({"permit": "pbg", "applicant": {"name": "X"}, "data": {}})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.check(
        Method::GET,
        "/v1/applications/{id}",
        &at(""),
        Some(&back),
        None,
        StatusCode::OK,
    )
    .await;
    c.check(
        Method::GET,
        "/v1/applications/{id}",
        "/v1/applications/nope",
        Some(&back),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    // At `pendaftaran` only the front office acts; a stale version is a conflict.
    c.check(
        Method::POST,
        "/v1/applications/{id}/transitions",
        &at("/transitions"),
        Some(&back),
        Some(json!({"action": "advance", "version": created["version"]})),
        StatusCode::FORBIDDEN,
    )
    .await;
    c.check(
        Method::POST,
        "/v1/applications/{id}/transitions",
        &at("/transitions"),
        Some(&front),
        Some(json!({"action": "advance", "version": 999})),
        StatusCode::CONFLICT,
    )
    .await;
    let advanced = c.check(Method::POST,
        "/v1/applications/{id}/transitions",
        &at("/transitions"),
        Some(&front),
        Some(json!({"action": "advance", "version": created["version"], "note": "berkas lengkap"})),
        StatusCode::OK,
    ).await;
    c.check(
        Method::PUT,
        "/v1/applications/{id}/data",
        &at("/data"),
        Some(&back),
        Some(json!({"data": data, "version": advanced["version"]})),
        StatusCode::OK,
    )
    .await;

    // Without a NIK the guard of `pendaftaran` refuses.
    let no_nik = c
        .check(
            Method::POST,
            "/v1/applications",
            "/v1/applications",
            Some(&front),
            Some(new(None, false)),
            StatusCode::CREATED,
        )
        .await;
    let no_nik_id = no_nik["id"].as_str().unwrap();
    c.check(
        Method::POST,
        "/v1/applications/{id}/transitions",
        &format!("/v1/applications/{no_nik_id}/transitions"),
        Some(&front),
        Some(json!({"action": "advance", "version": no_nik["version"]})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // A draft, completed and submitted.
    let draft = c
        .check(
            Method::POST,
            "/v1/applications",
            "/v1/applications",
            Some(&front),
            Some(json!({"permit": "pbg", "applicant": {"name": "Sari"}, "draft": true})),
            StatusCode::CREATED,
        )
        .await;
    let draft_id = draft["id"].as_str().unwrap();
    c.check(
        Method::PUT,
        "/v1/applications/{id}/data",
        &format!("/v1/applications/{draft_id}/data"),
        Some(&front),
        Some(json!({"data": data, "applicant": {"name": "Sari", "nik": "1871010101800002"}})),
        StatusCode::OK,
    )
    .await;
    c.check(
        Method::POST,
        "/v1/applications/{id}/submit",
        &format!("/v1/applications/{draft_id}/submit"),
        Some(&front),
        Some(json!({})),
        StatusCode::OK,
    )
    .await;

    c.check(
        Method::GET,
        "/v1/applications",
        "/v1/applications?permit=pbg&limit=2",
        Some(&back),
        None,
        StatusCode::OK,
    )
    .await;
    c.check(
        Method::GET,
        "/v1/applications",
        "/v1/applications?limit=0",
        Some(&back),
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    c.check(
        Method::GET,
        "/admin/events",
        "/admin/events?after=0&limit=50",
        Some(&admin),
        None,
        StatusCode::OK,
    )
    .await;
    assert!(
        c.problems.is_empty(),
        "answers that differ from /openapi.json:\n{}",
        c.problems.join("\n")
    );
}
