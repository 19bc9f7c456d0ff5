//! The route table: every route of the HTTP surface with its method, path and who may call it.
//! [`super::router`] mounts routes only from this table, so a route cannot exist without a row
//! stating its access; the end-to-end auth matrix reads the same table and checks every row
//! against the running server. Each row also carries its OpenAPI operation (the handler's
//! `#[utoipa::path]`, attached with [`Route::doc`]): `/openapi.json` is built from the table, and
//! a test names every row without one.

use std::sync::Arc;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware;
use axum::routing::{self, MethodRouter};
use axum::Router;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;

use crate::app::App;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a token, if sent, is ignored.
    Public,
    /// Any caller with a valid token (a role token, or an active user's), whatever its roles:
    /// for routes whose handler decides by the request itself (the role of an application's
    /// current step, the permit type's scope). An office's own roles (`roles` in `pintu.toml`,
    /// which flows may name) pass here, where no fixed list could name them.
    Staff,
    /// A caller holding one of these roles (see [`crate::auth::ROLES`]): a role token with one
    /// of them or a user with one of them. Checked before the handler runs.
    Roles(&'static [&'static str]),
}

/// One row of the route table.
pub struct Route {
    pub method: Method,
    /// The axum path pattern, e.g. `/admin/releases/{id}/activate`.
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<Arc<App>>,
    /// The row's OpenAPI operation; `None` only until someone documents it (a test fails).
    pub(super) doc: Option<Doc>,
}

/// The OpenAPI operation of a handler, as `#[utoipa::path]` generates it (the `__path_<handler>`
/// type), held as function pointers so that the table stays a plain list of rows.
#[derive(Clone, Copy)]
pub(super) struct Doc {
    pub path: fn() -> String,
    pub methods: fn() -> Vec<HttpMethod>,
    pub tags: fn() -> Vec<&'static str>,
    pub operation: fn() -> Operation,
    /// Adds the schemas the operation refers to.
    pub schemas: fn(&mut Vec<(String, RefOr<Schema>)>),
}

impl Route {
    pub fn get<H, T>(path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, Arc<App>>,
        T: 'static,
    {
        Self::new(Method::GET, path, access, routing::get(handler))
    }

    pub fn post<H, T>(path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, Arc<App>>,
        T: 'static,
    {
        Self::new(Method::POST, path, access, routing::post(handler))
    }

    pub fn put<H, T>(path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, Arc<App>>,
        T: 'static,
    {
        Self::new(Method::PUT, path, access, routing::put(handler))
    }

    pub fn patch<H, T>(path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, Arc<App>>,
        T: 'static,
    {
        Self::new(Method::PATCH, path, access, routing::patch(handler))
    }

    pub fn delete<H, T>(path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, Arc<App>>,
        T: 'static,
    {
        Self::new(Method::DELETE, path, access, routing::delete(handler))
    }

    fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<Arc<App>>,
    ) -> Self {
        Self {
            method,
            path,
            access,
            handler,
            doc: None,
        }
    }

    /// Attaches the OpenAPI operation of the handler: `.doc::<__path_handler>()`, the type
    /// `#[utoipa::path]` generates next to `handler`.
    #[must_use]
    pub fn doc<P>(mut self) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
    {
        self.doc = Some(Doc {
            path: P::path,
            methods: P::methods,
            tags: P::tags,
            operation: P::operation,
            schemas: P::schemas,
        });
        self
    }
}

/// Every route of the API, public, admin and users.
pub fn routes() -> Vec<Route> {
    let mut all = super::public_routes();
    all.extend(super::admin::routes());
    all.extend(super::users::routes());
    all.extend(super::applications::routes());
    all.extend(super::outbox::routes());
    all.extend(super::connectors::routes());
    all
}

/// Adds every route of the table to `router` (routes sharing a path share its method router).
/// A row's access is enforced here: a `Staff` or `Roles` route is wrapped in the check of the
/// caller's token (and roles), so the table is what decides who gets past the door.
pub(super) fn mount(router: Router<Arc<App>>, app: &Arc<App>) -> Router<Arc<App>> {
    mount_table(router, app, routes())
}

fn mount_table(router: Router<Arc<App>>, app: &Arc<App>, table: Vec<Route>) -> Router<Arc<App>> {
    table.into_iter().fold(router, |r, route| {
        let handler = match route.access {
            Access::Public => route.handler,
            access => route.handler.route_layer(middleware::from_fn_with_state(
                app.clone(),
                move |State(app), req, next| super::extract::require(app, access, req, next),
            )),
        };
        r.route(route.path, handler)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_unique_and_admin_routes_are_not_public() {
        let table = routes();
        let mut seen = std::collections::BTreeSet::new();
        for r in &table {
            assert!(
                seen.insert((r.method.to_string(), r.path)),
                "{} {} is listed twice",
                r.method,
                r.path
            );
            if r.path.starts_with("/admin/") {
                assert_eq!(
                    r.access,
                    Access::Roles(&[crate::auth::ADMIN]),
                    "{} {}",
                    r.method,
                    r.path
                );
            }
        }
        assert!(seen.contains(&("DELETE".to_owned(), "/admin/tokens/{id}")));
    }

    /// A handler that checks nothing is still closed to callers its row leaves out: the table
    /// is the enforcement, not only the declaration.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_s_roles_are_enforced_before_a_handler_that_checks_nothing() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt;

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = crate::config::Config::resolve(
            None,
            Some(dir.path().join("rules")),
            Some(data.clone()),
            None,
        )
        .unwrap();
        config.watch = false;
        let store = crate::store::Store::open(&data, 8).unwrap();
        let roles = crate::auth::Roles::default();
        let token = |role: &str| {
            let (store, roles, role) = (store.clone(), roles.clone(), role.to_owned());
            async move {
                tokio::task::spawn_blocking(move || {
                    crate::auth::create_token(&store, &roles, &role, "")
                        .unwrap()
                        .0
                })
                .await
                .unwrap()
            }
        };
        let (teknis, admin) = (token("tim_teknis").await, token("admin").await);
        let app = Arc::new(App::new(config, store));
        let table = vec![Route::get(
            "/probe",
            Access::Roles(&["tim_teknis", "kepala_dinas"]),
            || async { "reached" },
        )];
        let router = mount_table(Router::new(), &app, table).with_state(app);
        let call = |bearer: Option<String>| {
            let router = router.clone();
            async move {
                let mut req = Request::get("/probe");
                if let Some(t) = bearer {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                let r = router
                    .oneshot(req.body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                let status = r.status();
                let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(call(Some(teknis)).await, (StatusCode::OK, "reached".into()));
        let (status, body) = call(Some(admin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body.contains("one of the roles `tim_teknis`, `kepala_dinas` required"),
            "{body}"
        );
        assert_eq!(call(None).await.0, StatusCode::UNAUTHORIZED);
        let unknown = format!("pintu_{}", "0".repeat(64));
        assert_eq!(call(Some(unknown)).await.0, StatusCode::UNAUTHORIZED);
    }

    /// An office with roles of its own: a `Staff` row lets its tokens through (the handler
    /// decides by the request), a fixed list of default roles would not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staff_row_admits_every_valid_token_of_the_office_s_own_roles() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt;

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config_file = dir.path().join("pintu.toml");
        std::fs::write(&config_file, "roles = [\"loket\", \"kasir\"]\n").unwrap();
        let mut config = crate::config::Config::resolve(
            Some(&config_file),
            Some(dir.path().join("rules")),
            Some(data.clone()),
            None,
        )
        .unwrap();
        config.watch = false;
        let store = crate::store::Store::open(&data, 8).unwrap();
        let roles = config.roles.clone();
        let loket = tokio::task::spawn_blocking({
            let store = store.clone();
            move || {
                crate::auth::create_token(&store, &roles, "loket", "")
                    .unwrap()
                    .0
            }
        })
        .await
        .unwrap();
        let app = Arc::new(App::new(config, store));
        let table = vec![
            Route::get("/staff", Access::Staff, || async { "reached" }),
            Route::get("/defaults", Access::Roles(crate::auth::ROLES), || async {
                "reached"
            }),
        ];
        let router = mount_table(Router::new(), &app, table).with_state(app);
        let call = |path: &'static str, bearer: Option<String>| {
            let router = router.clone();
            async move {
                let mut req = Request::get(path);
                if let Some(t) = bearer {
                    req = req.header("authorization", format!("Bearer {t}"));
                }
                let r = router
                    .oneshot(req.body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                r.status()
            }
        };
        assert_eq!(call("/staff", Some(loket.clone())).await, StatusCode::OK);
        assert_eq!(call("/staff", None).await, StatusCode::UNAUTHORIZED);
        let unknown = format!("pintu_{}", "0".repeat(64));
        assert_eq!(
            call("/staff", Some(unknown)).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(call("/defaults", Some(loket)).await, StatusCode::FORBIDDEN);
    }
}
