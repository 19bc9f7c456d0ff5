//! Users and their tokens: creation, changes, listing, each change written in one transaction
//! with its audit entry. The blocking functions serve the command line too (`pintu user ...`,
//! with the server stopped); [`Users`] runs them on the blocking pool for the HTTP surface.

use std::sync::Mutex;

use chrono::Utc;
use serde_json::json;

use super::recorder::{audit_op, Actor, AuditAction};
use crate::auth::users::{
    check_name, check_nip, check_permits, check_roles, check_username, InvalidUser, NewUser,
    UserChange,
};
use crate::auth::{self, AuthError, Roles};
use crate::store::records::{TokenRecord, UserRecord};
use crate::store::{Op, Store, StoreError};

/// Why a user operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Invalid(#[from] InvalidUser),
    #[error("user `{0}` already exists")]
    Exists(String),
    #[error("no user `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

// INVARIANT: every read-check-write of a user holds this lock, so two creations of one username
// cannot both pass the check and a change is never computed from a stale record. Users change
// rarely; one lock for all of them costs nothing. (The command line runs only while the server
// is stopped: the database admits one process.)
static WRITES: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic elsewhere leaves nothing half-changed to protect.
    WRITES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Creates a user; 409-worthy [`UserError::Exists`] if the username is taken.
pub fn create(
    store: &Store,
    office: &Roles,
    new: NewUser,
    actor: &Actor,
) -> Result<UserRecord, UserError> {
    check_username(&new.username)?;
    let name = check_name(&new.name)?;
    let nip = check_nip(new.nip.as_deref())?;
    check_roles(&new.roles, office)?;
    check_permits(&new.permits)?;
    let _guard = lock();
    if store.user(&new.username)?.is_some() {
        return Err(UserError::Exists(new.username));
    }
    let now = Utc::now();
    let user = UserRecord {
        username: new.username,
        name,
        nip,
        roles: new.roles,
        permits: new.permits,
        active: true,
        created_at: now,
        updated_at: now,
    };
    let audit = audit_op(
        actor,
        AuditAction::UserCreated,
        json!({
            "username": user.username,
            "name": user.name,
            "nip": user.nip,
            "roles": user.roles,
            "permits": user.permits,
        }),
    );
    store.write_blocking(vec![Op::User(user.clone()), audit])?;
    Ok(user)
}

/// Applies the fields present in `change`; the audit entry names each changed field's old and
/// new value. A change that changes nothing is answered with the user, unwritten.
pub fn update(
    store: &Store,
    office: &Roles,
    username: &str,
    change: UserChange,
    actor: &Actor,
) -> Result<UserRecord, UserError> {
    let _guard = lock();
    let before = store
        .user(username)?
        .ok_or_else(|| UserError::NotFound(username.to_owned()))?;
    let mut after = before.clone();
    if let Some(name) = &change.name {
        after.name = check_name(name)?;
    }
    if let Some(nip) = &change.nip {
        after.nip = check_nip(Some(nip))?;
    }
    if let Some(roles) = change.roles {
        check_roles(&roles, office)?;
        after.roles = roles;
    }
    if let Some(permits) = change.permits {
        check_permits(&permits)?;
        after.permits = permits;
    }
    if let Some(active) = change.active {
        after.active = active;
    }
    let mut changed = serde_json::Map::new();
    let mut note = |field: &str, from: serde_json::Value, to: serde_json::Value| {
        if from != to {
            changed.insert(field.to_owned(), json!({ "from": from, "to": to }));
        }
    };
    note("name", json!(before.name), json!(after.name));
    note("nip", json!(before.nip), json!(after.nip));
    note("roles", json!(before.roles), json!(after.roles));
    note("permits", json!(before.permits), json!(after.permits));
    note("active", json!(before.active), json!(after.active));
    if changed.is_empty() {
        return Ok(before);
    }
    after.updated_at = Utc::now();
    let audit = audit_op(
        actor,
        AuditAction::UserUpdated,
        json!({ "username": username, "changed": changed }),
    );
    store.write_blocking(vec![Op::User(after.clone()), audit])?;
    Ok(after)
}

/// Creates a token for the user `username`; returns the secret (shown once) and its record.
/// A deactivated user may get one: it works once the user is active again.
pub fn create_token(
    store: &Store,
    username: &str,
    label: &str,
    actor: &Actor,
) -> Result<(String, TokenRecord), UserError> {
    let _guard = lock();
    if store.user(username)?.is_none() {
        return Err(UserError::NotFound(username.to_owned()));
    }
    let (secret, record, op) = auth::new_user_token(username, label)?;
    let audit = audit_op(
        actor,
        AuditAction::UserTokenCreated,
        json!({ "user": username, "id": record.id, "label": record.label }),
    );
    store.write_blocking(vec![op, audit])?;
    Ok((secret, record))
}

/// The tokens of the user `username` (never their secrets, which are not kept, nor hashes),
/// oldest first.
pub fn tokens(store: &Store, username: &str) -> Result<Vec<TokenRecord>, UserError> {
    if store.user(username)?.is_none() {
        return Err(UserError::NotFound(username.to_owned()));
    }
    let mut tokens: Vec<TokenRecord> = store
        .tokens()?
        .into_iter()
        .filter(|t| t.user.as_deref() == Some(username))
        .collect();
    tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(tokens)
}

/// The HTTP surface's handle on users: each operation on the blocking pool (user writes are
/// durable, synchronous commits).
pub struct Users {
    store: Store,
    /// The roles a user may hold (the office's configuration).
    roles: Roles,
}

impl Users {
    pub(crate) fn new(store: Store, roles: Roles) -> Self {
        Self { store, roles }
    }

    pub async fn create(&self, new: NewUser, actor: Actor) -> Result<UserRecord, UserError> {
        let roles = self.roles.clone();
        self.store
            .blocking(move |s| create(s, &roles, new, &actor))
            .await
    }

    pub async fn update(
        &self,
        username: String,
        change: UserChange,
        actor: Actor,
    ) -> Result<UserRecord, UserError> {
        let roles = self.roles.clone();
        self.store
            .blocking(move |s| update(s, &roles, &username, change, &actor))
            .await
    }

    pub async fn get(&self, username: String) -> Result<UserRecord, UserError> {
        self.store
            .blocking(move |s| s.user(&username)?.ok_or(UserError::NotFound(username)))
            .await
    }

    /// Every user, by username.
    pub async fn list(&self) -> Result<Vec<UserRecord>, UserError> {
        self.store
            .blocking(|s| s.users().map_err(UserError::from))
            .await
    }

    pub async fn create_token(
        &self,
        username: String,
        label: String,
        actor: Actor,
    ) -> Result<(String, TokenRecord), UserError> {
        self.store
            .blocking(move |s| create_token(s, &username, &label, &actor))
            .await
    }

    pub async fn tokens(&self, username: String) -> Result<Vec<TokenRecord>, UserError> {
        self.store.blocking(move |s| tokens(s, &username)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{PermitScope, Resolved};

    fn new_user(username: &str, roles: &[&str], permits: &[&str]) -> NewUser {
        NewUser {
            username: username.into(),
            name: format!("Pegawai {username}"),
            nip: None,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permits: permits.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn principal(store: &Store, token: &str) -> Resolved {
        auth::authenticate(store, token).unwrap()
    }

    #[test]
    fn a_user_token_carries_the_user_s_current_roles_scope_and_active_flag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let office = Roles::default();
        let admin = Actor::Cli;
        create(
            &store,
            &office,
            new_user("siti", &["front_office"], &["pbg"]),
            &admin,
        )
        .unwrap();
        let (token, record) = create_token(&store, "siti", "loket 1", &admin).unwrap();
        assert_eq!(record.user.as_deref(), Some("siti"));
        let Resolved::Active(p) = principal(&store, &token) else {
            panic!("not active")
        };
        assert_eq!(p.user.as_deref(), Some("siti"));
        assert_eq!(p.token_id, record.id);
        assert_eq!(p.roles, ["front_office"]);
        assert!(p.may_handle("pbg") && !p.may_handle("sip-dokter"));

        // A change applies to the next resolution.
        let change = UserChange {
            roles: Some(vec!["back_office".into(), "tim_teknis".into()]),
            permits: Some(vec!["*".into()]),
            ..UserChange::default()
        };
        update(&store, &office, "siti", change, &admin).unwrap();
        let Resolved::Active(p) = principal(&store, &token) else {
            panic!("not active")
        };
        assert_eq!(p.roles, ["back_office", "tim_teknis"]);
        assert_eq!(p.permits, PermitScope::All);

        let off = UserChange {
            active: Some(false),
            ..UserChange::default()
        };
        update(&store, &office, "siti", off, &admin).unwrap();
        assert_eq!(
            principal(&store, &token),
            Resolved::Deactivated {
                user: "siti".into()
            }
        );
        let on = UserChange {
            active: Some(true),
            ..UserChange::default()
        };
        update(&store, &office, "siti", on, &admin).unwrap();
        assert!(matches!(principal(&store, &token), Resolved::Active(_)));
    }

    #[test]
    fn a_username_is_taken_once_and_changes_need_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let office = Roles::default();
        let u = new_user("budi", &["admin"], &["*"]);
        create(&store, &office, u.clone(), &Actor::Cli).unwrap();
        assert!(matches!(
            create(&store, &office, u, &Actor::Cli),
            Err(UserError::Exists(name)) if name == "budi"
        ));
        assert!(matches!(
            update(
                &store,
                &office,
                "nobody",
                UserChange::default(),
                &Actor::Cli
            ),
            Err(UserError::NotFound(_))
        ));
        assert!(matches!(
            create_token(&store, "nobody", "", &Actor::Cli),
            Err(UserError::NotFound(_))
        ));
        assert!(matches!(
            tokens(&store, "nobody"),
            Err(UserError::NotFound(_))
        ));
        // A bad field changes nothing.
        let bad = UserChange {
            name: Some("Budi Baru".into()),
            roles: Some(vec!["kasir".into()]),
            ..UserChange::default()
        };
        let e = update(&store, &office, "budi", bad, &Actor::Cli).unwrap_err();
        assert!(
            matches!(e, UserError::Invalid(ref i) if i.field == "roles"),
            "{e}"
        );
        assert_eq!(store.user("budi").unwrap().unwrap().name, "Pegawai budi");
    }

    /// The first admin token is revoked once the office runs on admin users; a restart must not
    /// write a new one while an active admin user holds a token, and must when none does.
    #[test]
    fn no_new_first_admin_token_while_an_admin_user_can_sign_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let office = Roles::default();
        let first = auth::ensure_admin(&store, dir.path()).unwrap().unwrap();
        let first = std::fs::read_to_string(first).unwrap();
        create(
            &store,
            &office,
            new_user("kepala", &["admin"], &["*"]),
            &Actor::Cli,
        )
        .unwrap();
        create_token(&store, "kepala", "", &Actor::Cli).unwrap();
        let id = auth::lookup(&store, first.trim()).unwrap().unwrap().id;
        auth::revoke_token(&store, &id).unwrap().unwrap();
        assert_eq!(auth::ensure_admin(&store, dir.path()).unwrap(), None);

        // Without its admin role, no token can act as an admin: the way back in is written.
        let change = UserChange {
            roles: Some(vec!["kepala_dinas".into()]),
            ..UserChange::default()
        };
        update(&store, &office, "kepala", change, &Actor::Cli).unwrap();
        assert!(auth::ensure_admin(&store, dir.path()).unwrap().is_some());
    }

    #[test]
    fn concurrent_creations_of_one_username_make_one_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 64).unwrap();
        let office = Roles::default();
        let created: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (store, office) = (&store, &office);
                    scope.spawn(move || {
                        let mut u = new_user("rina", &["kepala_dinas"], &["*"]);
                        u.name = format!("Rina {i}");
                        create(store, office, u, &Actor::Cli).is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(created, 1);
        assert_eq!(store.users().unwrap().len(), 1);
        let audit = store.audit(10, None).unwrap();
        let creations = audit
            .items
            .iter()
            .filter_map(|a| a.record())
            .filter(|a| a.action == "user_created")
            .count();
        assert_eq!(creations, 1);
    }
}
