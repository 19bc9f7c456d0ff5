//! Who is calling: the [`Principal`] a bearer token resolves to at each request, with the roles
//! and the permit types it may act on. Handlers decide with it; the route table's
//! `Access::Roles` row is checked against it before any handler runs.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A user's `permits` list holding only this means every permit type.
pub const ALL_PERMITS: &str = "*";

/// The permit types a caller may handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermitScope {
    /// Every permit type, present and future (`["*"]` of a user; every role token).
    All,
    /// Only these permit type ids.
    Only(BTreeSet<String>),
}

impl PermitScope {
    /// The scope a user's `permits` list states: `["*"]` is every permit type. The list is
    /// validated when the user is written.
    pub fn from_list(permits: &[String]) -> Self {
        if permits.iter().any(|p| p == ALL_PERMITS) {
            Self::All
        } else {
            Self::Only(permits.iter().cloned().collect())
        }
    }

    pub fn contains(&self, permit: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.contains(permit),
        }
    }
}

/// The authenticated caller of one request, resolved from its token when the request arrives:
/// a user's roles, scope and active flag are read then, so an admin's change applies to the
/// next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The public id of the token presented.
    pub token_id: String,
    /// The user the token belongs to; `None` for a role token (`POST /admin/tokens`,
    /// `pintu token create`).
    pub user: Option<String>,
    /// The user's roles, or a role token's one role.
    pub roles: Vec<String>,
    /// The user's permit types; every one for a role token.
    pub permits: PermitScope,
}

impl Principal {
    /// The caller of a role token: its one role, every permit type.
    pub fn role_token(token_id: &str, role: &str) -> Self {
        Self {
            token_id: token_id.to_owned(),
            user: None,
            roles: vec![role.to_owned()],
            permits: PermitScope::All,
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether any of `roles` is the caller's.
    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.has_role(r))
    }

    /// Whether the caller may act on applications of the permit type `permit`.
    pub fn may_handle(&self, permit: &str) -> bool {
        self.permits.contains(permit)
    }

    /// Who the caller is in audit entries and application histories: the username, or
    /// `token:<id>` for a role token.
    pub fn actor(&self) -> String {
        match &self.user {
            Some(user) => user.clone(),
            None => format!("token:{}", self.token_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_token_has_its_role_and_every_permit_type() {
        let p = Principal::role_token("abc123", "front_office");
        assert!(p.has_role("front_office"));
        assert!(!p.has_role("admin"));
        assert!(p.has_any_role(&["admin", "front_office"]));
        assert!(p.may_handle("pbg") && p.may_handle("a-type-of-next-year"));
        assert_eq!(p.actor(), "token:abc123");
    }

    #[test]
    fn a_user_acts_under_its_name_within_its_permit_types() {
        let p = Principal {
            token_id: "abc123".into(),
            user: Some("siti".into()),
            roles: vec!["back_office".into(), "tim_teknis".into()],
            permits: PermitScope::from_list(&["pbg".into(), "sewa-tanah".into()]),
        };
        assert_eq!(p.actor(), "siti");
        assert!(p.may_handle("pbg") && p.may_handle("sewa-tanah"));
        assert!(!p.may_handle("sip-dokter"));
        assert!(p.has_role("tim_teknis") && !p.has_role("admin"));
        assert_eq!(PermitScope::from_list(&["*".into()]), PermitScope::All);
    }
}
