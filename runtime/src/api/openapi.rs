//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, built from the route table.
//!
//! Each row of [`super::routes`] carries the operation that `#[utoipa::path]` generates from its
//! handler (request body, parameters, answers and the schemas they name, all derived from the
//! Rust types with `utoipa::ToSchema`). What follows from the row itself is added here, so it
//! cannot disagree with what the server does: the bearer requirement and the 401/403 answers of
//! every route that is not public (from its [`Access`]), and the 400/413/415/422 answers of
//! every route that reads a JSON body (from the [`super::extract::Body`] extractor's rules).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr,
    ResponseBuilder, Tag,
};
use utoipa::{PartialSchema, ToSchema};

use super::error::{AppError, ErrorAnswer};
use super::routes::{routes, Access, Route};

/// The security scheme every non-public operation names.
pub const BEARER: &str = "bearer";

/// The tags of the document, in the order a reader meets them.
const TAGS: [(&str, &str); 5] = [
    (
        "rules",
        "Permit types and their rules: health, metrics, validation and levy",
    ),
    (
        "applications",
        "Applications carried through the configured flows",
    ),
    ("users", "Users of the office and their tokens"),
    (
        "connectors",
        "Connectors to outside systems: their inbound requests, list and dry runs",
    ),
    (
        "admin",
        "Releases, reloads, decisions, audit, tokens and events",
    ),
];

/// The document, built once: it depends only on the code.
static DOCUMENT: LazyLock<Result<Vec<u8>, String>> =
    LazyLock::new(|| serde_json::to_vec(&document()).map_err(|e| e.to_string()));

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "rules",
    summary = "This document: the OpenAPI 3.1 description of every route",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub(super) async fn openapi() -> Result<Response, AppError> {
    match &*DOCUMENT {
        Ok(json) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json.clone(),
        )
            .into_response()),
        Err(e) => Err(AppError::Internal(format!(
            "cannot serialise the OpenAPI document: {e}"
        ))),
    }
}

/// The OpenAPI document of every row of the route table that carries its operation.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for route in &routes() {
        let Some(doc) = route.doc else { continue };
        let mut operation = (doc.operation)();
        let tags = operation.tags.get_or_insert_with(Vec::new);
        tags.extend((doc.tags)().into_iter().map(str::to_owned));
        complete(&mut operation, route);
        let item = PathItem::from_http_methods((doc.methods)(), operation);
        paths
            .paths
            .entry((doc.path)())
            .and_modify(|existing| existing.merge_operations(item.clone()))
            .or_insert(item);
    }
    // Sorted by name, each once: the same document on every build.
    let schemas: BTreeMap<String, RefOr<Schema>> = schemas().into_iter().collect();
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: a token from `POST /admin/tokens`, \
                         `POST /admin/users/{username}/tokens`, the CLI, or the first admin's \
                         token file",
                    ))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Pintu")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Rules, applications and flows of a regional permit office. Every error \
                     answers `{\"error\": {\"code\", \"message\"}}` (the `ErrorAnswer` schema).",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .tags(Some(TAGS.iter().map(|(name, description)| {
            let mut tag = Tag::new(*name);
            tag.description = Some((*description).to_owned());
            tag
        })))
        .build()
}

/// Every schema the operations name, with repeats (two types of one name would collide: a test
/// checks that repeats are the same schema).
fn schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut schemas = Vec::new();
    for route in &routes() {
        if let Some(doc) = route.doc {
            (doc.schemas)(&mut schemas);
        }
    }
    schemas.push((ErrorAnswer::name().into_owned(), ErrorAnswer::schema()));
    schemas
}

/// Adds what the row states about the operation: who may call it and the answers every route
/// of its kind can give.
fn complete(operation: &mut Operation, route: &Route) {
    if route.access != Access::Public {
        operation
            .security
            .get_or_insert_with(Vec::new)
            .push(SecurityRequirement::new::<_, _, &str>(BEARER, []));
        error(
            operation,
            StatusCode::UNAUTHORIZED,
            "No token (`unauthenticated`), or one that is not valid (`invalid_token`)",
        );
    }
    if let Access::Roles(roles) = route.access {
        error(
            operation,
            StatusCode::FORBIDDEN,
            &format!(
                "`forbidden`: the token lacks what the route needs (roles at the door: {})",
                roles
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if operation.request_body.is_some() {
        error(
            operation,
            StatusCode::BAD_REQUEST,
            "`malformed_request`: the body is not JSON",
        );
        error(
            operation,
            StatusCode::PAYLOAD_TOO_LARGE,
            "`body_too_large`: the body is larger than `limits.max_body_bytes`",
        );
        error(
            operation,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "`unsupported_media_type`: the body is not `Content-Type: application/json`",
        );
        error(
            operation,
            StatusCode::UNPROCESSABLE_ENTITY,
            "`invalid_body`: the body's shape is wrong (the message names what); \
             `body_too_deep`: it nests deeper than `limits.max_json_depth`",
        );
    }
}

/// Adds an error answer for `status` unless the handler's own documentation states one.
fn error(operation: &mut Operation, status: StatusCode, description: &str) {
    let responses = &mut operation.responses.responses;
    let key = status.as_u16().to_string();
    if responses.contains_key(&key) {
        return;
    }
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorAnswer::name())))
                .build(),
        )
        .build();
    responses.insert(key, RefOr::T(response));
}

// The schemas of answers that are serialised by hand rather than derived from one type (an
// evaluation, a permit type's description). The router tests check real answers against them,
// so they cannot drift from what the server sends.

/// `POST /v1/permits/{id}/validate`: valid or not, a 200.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "a schema: the answer is serialised by `Evaluation`"
)]
pub(super) struct ValidationAnswer {
    valid: bool,
    /// Empty when valid.
    errors: Vec<crate::permits::fields::FieldError>,
    /// The release whose rules judged the data.
    release: String,
}

/// `POST /v1/permits/{id}/levy`: the assessment of valid data.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "a schema: the answer is serialised by `Evaluation`"
)]
pub(super) struct LevyAnswer {
    /// The exact sum of the items' amounts, a decimal string (e.g. `"1500000.50"`).
    total: String,
    /// Always `IDR`.
    currency: String,
    items: Vec<LevyItem>,
    /// What the script chose to show of its reasoning.
    trace: serde_json::Value,
    release: String,
}

/// One line of an assessment.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "a schema: the answer is serialised by `Evaluation`"
)]
pub(super) struct LevyItem {
    code: String,
    label: String,
    /// A decimal string.
    amount: String,
}

/// `GET /v1/permits/{id}`: the permit type as its `permit.toml` declares it.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "a schema: the answer is serialised by `Permit::describe`"
)]
pub(super) struct PermitDescription {
    id: String,
    name: String,
    description: Option<String>,
    has_levy: bool,
    fields: Vec<crate::permits::fields::FieldDef>,
    requirements: Vec<crate::permits::Requirement>,
    /// The list field that holds the codes of the documents supplied.
    documents_field: Option<String>,
    /// The steps of an application, in order; empty when the permit type carries none.
    flow: Vec<crate::domain::flow::Step>,
    numbering: crate::domain::numbering::Numbering,
    /// The active release.
    release: String,
}

/// `POST /admin/reload`, `POST /admin/releases/{id}/activate`: what became of the candidate.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "a schema: the answer is serialised by `ReloadOutcome`"
)]
pub(super) struct ReloadAnswer {
    /// The candidate serves (now or already).
    accepted: bool,
    /// Nothing was built: the candidate is the release serving already.
    unchanged: bool,
    /// The candidate's id; `""` when the folder could not be read.
    release: String,
    /// The release serving once the attempt was over.
    active: Option<String>,
    report: crate::release::ShownReport<'static>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json() -> Value {
        serde_json::to_value(document()).unwrap()
    }

    /// The OpenAPI form of a route's path (what `#[utoipa::path]` names): axum's catch-all
    /// `{*rest}` is the parameter `{rest}`.
    fn openapi_path(path: &str) -> String {
        path.replace("{*", "{")
    }

    /// Every `(method, path)` of the route table, lowercase method as OpenAPI writes it.
    fn table() -> Vec<(String, String)> {
        routes()
            .iter()
            .map(|r| (r.method.as_str().to_ascii_lowercase(), openapi_path(r.path)))
            .collect()
    }

    #[test]
    fn every_route_of_the_table_is_in_the_document() {
        let doc = json();
        let missing: Vec<String> = table()
            .into_iter()
            .filter(|(method, path)| doc["paths"][path.as_str()][method].is_null())
            .map(|(method, path)| format!("{} {path}", method.to_ascii_uppercase()))
            .collect();
        assert!(
            missing.is_empty(),
            "routes missing from /openapi.json: {}; document each handler with \
             `#[utoipa::path(...)]` and attach it to its row with `.doc::<__path_handler>()`",
            missing.join(", ")
        );
    }

    #[test]
    fn the_document_describes_no_route_the_server_lacks() {
        let table = table();
        let doc = json();
        let mut extra = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if !table.iter().any(|(m, p)| m == method && p == path) {
                    extra.push(format!("{} {path}", method.to_ascii_uppercase()));
                }
            }
        }
        assert!(
            extra.is_empty(),
            "documented but not in the route table (a `path = ...` that differs from the row?): {}",
            extra.join(", ")
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_ref_resolves() {
        let doc = json();
        let version = doc["openapi"].as_str().unwrap();
        assert!(version.starts_with("3.1."), "openapi version {version}");
        assert!(!doc["info"]["title"].as_str().unwrap().is_empty());
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 20, "only {} $refs: {refs:?}", refs.len());
        let dangling: Vec<&String> = refs
            .iter()
            .filter(|r| {
                r.strip_prefix('#')
                    .and_then(|pointer| doc.pointer(pointer))
                    .is_none()
            })
            .collect();
        assert!(
            dangling.is_empty(),
            "$refs that resolve to nothing: {dangling:?}"
        );
        // Every security requirement names a declared scheme.
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn routes_with_a_token_say_so_and_answer_errors_in_the_error_shape() {
        let doc = json();
        for route in routes() {
            let method = route.method.as_str().to_ascii_lowercase();
            let path = openapi_path(route.path);
            let op = &doc["paths"][path.as_str()][&method];
            if op.is_null() {
                continue; // named by `every_route_of_the_table_is_in_the_document`
            }
            let name = format!("{} {}", route.method, route.path);
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{name}: no success answer"
            );
            for (status, response) in responses {
                // `/health` answers its own body when unavailable: load balancers read it.
                let health = route.path == "/health" && status == "503";
                if (status.starts_with('4') || status.starts_with('5')) && !health {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorAnswer",
                        "{name} {status}"
                    );
                }
            }
            match route.access {
                Access::Public => assert!(op["security"].is_null(), "{name}"),
                // The handler decides (and documents) any 403.
                Access::Staff => {
                    assert_eq!(
                        op["security"],
                        serde_json::json!([{ BEARER: [] }]),
                        "{name}"
                    );
                    assert!(responses.contains_key("401"), "{name}: no 401");
                }
                Access::Roles(_) => {
                    assert_eq!(
                        op["security"],
                        serde_json::json!([{ BEARER: [] }]),
                        "{name}"
                    );
                    for status in ["401", "403"] {
                        assert!(responses.contains_key(status), "{name}: no {status}");
                    }
                }
            }
            // Every `{param}` of the path is a declared path parameter.
            for param in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            {
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == param && p["in"] == "path"));
                assert!(declared, "{name}: path parameter `{param}` not declared");
            }
            let tags = op["tags"].as_array().unwrap();
            assert!(
                tags.len() == 1 && TAGS.iter().any(|(t, _)| tags[0] == *t),
                "{name}: tags {tags:?}"
            );
        }
    }

    #[test]
    fn no_two_types_share_a_schema_name() {
        let mut seen: BTreeMap<String, Value> = BTreeMap::new();
        let mut clashes = Vec::new();
        for (name, schema) in schemas() {
            let schema = serde_json::to_value(schema).unwrap();
            match seen.get(&name) {
                Some(first) if *first != schema => clashes.push(name),
                Some(_) => {}
                None => {
                    seen.insert(name, schema);
                }
            }
        }
        assert!(
            clashes.is_empty(),
            "different types with one schema name (one would hide the other; rename one with \
             `#[schema(as = ...)]`): {clashes:?}"
        );
    }

    fn collect_refs(value: &Value, refs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => refs.push(r.clone()),
                        _ => collect_refs(v, refs),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
            _ => {}
        }
    }
}
