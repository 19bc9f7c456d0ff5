//! The route table: every route of the HTTP surface with its method, path and who may call it.
//! [`super::router`] mounts routes only from this table, so a route cannot exist without a row
//! stating its access; the end-to-end auth matrix reads the same table and checks every row
//! against the running server.

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::app::App;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a token, if sent, is ignored.
    Public,
    /// A bearer token with one of these roles (see [`crate::auth::ROLES`]).
    Roles(&'static [&'static str]),
}

/// One row of the route table.
pub struct Route {
    pub method: Method,
    /// The axum path pattern, e.g. `/admin/releases/{id}/activate`.
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<Arc<App>>,
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
        }
    }
}

/// Every route of the API, public and admin.
pub fn routes() -> Vec<Route> {
    let mut all = super::public_routes();
    all.extend(super::admin::routes());
    all
}

/// Adds every route of the table to `router` (routes sharing a path share its method router).
pub(super) fn mount(router: Router<Arc<App>>) -> Router<Arc<App>> {
    routes()
        .into_iter()
        .fold(router, |r, route| r.route(route.path, route.handler))
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
}
