//! Who may call: the office's roles, API tokens (random secrets shown once, stored only as
//! SHA-256 hashes) and the [`Principal`] a presented token resolves to.

mod principal;
pub mod users;

pub use principal::{PermitScope, Principal, ALL_PERMITS};

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::store::records::TokenRecord;
use crate::store::{Op, Store, StoreError};

/// The roles an office has unless its `pintu.toml` lists its own (`roles`, see
/// [`crate::config::DEFAULT_ROLES`]); kept under this name for the callers that knew it.
pub const ROLES: &[&str] = crate::config::DEFAULT_ROLES;
/// Manages releases and tokens; exists in every office whatever its configuration says.
pub const ADMIN: &str = "admin";
/// Where the first admin token is written on first start, inside the data folder.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
const TOKEN_PREFIX: &str = "pintu_";

/// The roles tokens (and later flows) of this office may carry: `roles` of `pintu.toml`, or
/// [`crate::config::DEFAULT_ROLES`]. [`ADMIN`] is always one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(Vec<String>);

impl Default for Roles {
    fn default() -> Self {
        Self(
            crate::config::DEFAULT_ROLES
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
        )
    }
}

/// Why a configured list of roles cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolesError {
    #[error("role `{0}`: names use lowercase letters, digits and `_` only")]
    Name(String),
    #[error("role `{0}` is listed twice")]
    Twice(String),
}

impl Roles {
    /// The office's roles in the order listed, with [`ADMIN`] first if the list leaves it out.
    pub fn new(names: impl IntoIterator<Item = String>) -> Result<Self, RolesError> {
        let mut roles = vec![ADMIN.to_owned()];
        let mut listed_admin = false;
        for name in names {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(RolesError::Name(name));
            }
            if name == ADMIN && !listed_admin {
                listed_admin = true;
                continue;
            }
            if roles.contains(&name) {
                return Err(RolesError::Twice(name));
            }
            roles.push(name);
        }
        Ok(Self(roles))
    }

    pub fn contains(&self, role: &str) -> bool {
        self.0.iter().any(|r| r == role)
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }
}

/// A token was asked for with a role the office does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{role}` (expected one of: {known})")]
pub struct UnknownRole {
    pub role: String,
    /// The office's roles, comma-separated.
    pub known: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    UnknownRole(UnknownRole),
    #[error("cannot generate a token: {0}")]
    Random(String),
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn generate() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// Creates a token with `role`, one of the office's `roles`, and returns the secret; only its
/// hash is stored.
pub fn create_token(
    store: &Store,
    roles: &Roles,
    role: &str,
    label: &str,
) -> Result<(String, TokenRecord), AuthError> {
    if !roles.contains(role) {
        return Err(AuthError::UnknownRole(UnknownRole {
            role: role.to_owned(),
            known: roles.names().join(", "),
        }));
    }
    let token = generate()?;
    let hash = hash(&token);
    let record = TokenRecord {
        id: hash.get(..12).unwrap_or(&hash).to_owned(),
        role: role.to_owned(),
        label: label.to_owned(),
        created_at: Utc::now(),
        user: None,
    };
    store.write_blocking(vec![Op::Token {
        hash,
        record: record.clone(),
    }])?;
    Ok((token, record))
}

/// Revokes the token whose public id is `id`; returns its record, or `None` if no token has
/// that id. Lookups read the store on every request, so the token stops working at once.
pub fn revoke_token(store: &Store, id: &str) -> Result<Option<TokenRecord>, StoreError> {
    let Some((hash, record)) = store.token_by_id(id)? else {
        return Ok(None);
    };
    store.write_blocking(vec![Op::RevokeToken { hash }])?;
    Ok(Some(record))
}

/// The role of a presented token, if it is known.
pub fn lookup(store: &Store, token: &str) -> Result<Option<TokenRecord>, StoreError> {
    store.token(&hash(token))
}

/// What a presented token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A token that was never issued or has been revoked.
    Unknown,
    /// The token of a user an admin deactivated: refused until the user is active again.
    Deactivated {
        user: String,
    },
    Active(Principal),
}

/// Resolves a presented token to its caller, reading the store now: a role token's role, or its
/// user's current roles, scope and active flag.
pub fn authenticate(store: &Store, token: &str) -> Result<Resolved, StoreError> {
    let Some((record, user)) = store.token_and_user(&hash(token))? else {
        return Ok(Resolved::Unknown);
    };
    Ok(match (record.user, user) {
        (None, _) => Resolved::Active(Principal::role_token(&record.id, &record.role)),
        // Users are never deleted; a token naming none is not a credential.
        (Some(_), None) => Resolved::Unknown,
        (Some(_), Some(user)) if !user.active => Resolved::Deactivated {
            user: user.username,
        },
        (Some(_), Some(user)) => Resolved::Active(Principal {
            token_id: record.id,
            permits: PermitScope::from_list(&user.permits),
            user: Some(user.username),
            roles: user.roles,
        }),
    })
}

/// Creates a token for the user `username` (which the caller has checked exists) and returns
/// the secret with the record, unwritten: the caller writes it with its audit entry.
pub fn new_user_token(username: &str, label: &str) -> Result<(String, TokenRecord, Op), AuthError> {
    let token = generate()?;
    let hash = hash(&token);
    let record = TokenRecord {
        id: hash.get(..12).unwrap_or(&hash).to_owned(),
        role: String::new(),
        label: label.to_owned(),
        created_at: Utc::now(),
        user: Some(username.to_owned()),
    };
    let op = Op::Token {
        hash,
        record: record.clone(),
    };
    Ok((token, record, op))
}

/// On first start there is no admin yet: create one and leave the secret in
/// `DATA/admin.token`, readable by the server's user only. Returns the file written, if any.
/// Also the way back in when no token can act as an admin any more (every admin token revoked,
/// every admin user deactivated or without a token).
pub fn ensure_admin(store: &Store, data_dir: &Path) -> Result<Option<PathBuf>, AuthError> {
    if an_admin_can_sign_in(store)? {
        return Ok(None);
    }
    // Every list of roles holds the admin.
    let (token, _) = create_token(
        store,
        &Roles::default(),
        ADMIN,
        "first admin, created at start",
    )?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_secret(&path, &token).map_err(|source| AuthError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(Some(path))
}

/// Whether some token acts as an admin now: a role token with [`ADMIN`], or a token of an active
/// user holding it. An office run by admin users may revoke the first admin token for good.
fn an_admin_can_sign_in(store: &Store) -> Result<bool, StoreError> {
    for token in store.tokens()? {
        let admin = match &token.user {
            None => token.role == ADMIN,
            Some(name) => store
                .user(name)?
                .is_some_and(|u| u.active && u.roles.iter().any(|r| r == ADMIN)),
        };
        if admin {
            return Ok(true);
        }
    }
    Ok(false)
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_admin_is_written_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let path = ensure_admin(&store, dir.path()).unwrap().unwrap();
        let token = std::fs::read_to_string(&path).unwrap();
        let record = lookup(&store, token.trim()).unwrap().unwrap();
        assert_eq!(record.role, ADMIN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(ensure_admin(&store, dir.path()).unwrap().is_none());
    }

    #[test]
    fn unknown_roles_and_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        assert!(matches!(
            create_token(&store, &Roles::default(), "root", ""),
            Err(AuthError::UnknownRole(_))
        ));
        assert!(lookup(&store, "pintu_nope").unwrap().is_none());
        let (token, _) =
            create_token(&store, &Roles::default(), "front_office", "loket 1").unwrap();
        assert_eq!(
            lookup(&store, &token).unwrap().unwrap().role,
            "front_office"
        );
        // Only the hash is stored.
        assert!(store.token(&token).unwrap().is_none());
    }

    #[test]
    fn a_revoked_token_is_unknown_at_once_and_others_keep_working() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let (kept, _) = create_token(&store, &Roles::default(), "back_office", "").unwrap();
        let (gone, record) =
            create_token(&store, &Roles::default(), "front_office", "loket 2").unwrap();
        let revoked = revoke_token(&store, &record.id).unwrap().unwrap();
        assert_eq!(
            (revoked.role.as_str(), revoked.label.as_str()),
            ("front_office", "loket 2")
        );
        assert!(lookup(&store, &gone).unwrap().is_none());
        assert_eq!(lookup(&store, &kept).unwrap().unwrap().role, "back_office");
        assert!(revoke_token(&store, &record.id).unwrap().is_none());
        assert!(revoke_token(&store, "000000000000").unwrap().is_none());
    }

    #[test]
    fn roles_come_from_the_office_and_always_hold_the_admin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8).unwrap();
        let office = Roles::new(["loket".to_owned(), "bendahara".to_owned()]).unwrap();
        assert_eq!(office.names(), ["admin", "loket", "bendahara"]);
        let (token, _) = create_token(&store, &office, "bendahara", "kas").unwrap();
        assert_eq!(lookup(&store, &token).unwrap().unwrap().role, "bendahara");
        // Not in this office's list, though it is a default role.
        let err = create_token(&store, &office, "front_office", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role `front_office` (expected one of: admin, loket, bendahara)"
        );
        assert!(create_token(&store, &office, ADMIN, "").is_ok());
        // Listing the admin itself is fine; listing a role twice or a bad name is not.
        let with_admin = Roles::new(["admin".to_owned(), "loket".to_owned()]).unwrap();
        assert_eq!(with_admin.names(), ["admin", "loket"]);
        assert_eq!(
            Roles::new(["loket".to_owned(), "loket".to_owned()]),
            Err(RolesError::Twice("loket".into()))
        );
        assert_eq!(
            Roles::new(["Kepala Dinas".to_owned()]),
            Err(RolesError::Name("Kepala Dinas".into()))
        );
    }

    #[test]
    fn the_default_roles_are_todays_list() {
        assert_eq!(
            Roles::default().names(),
            [
                "admin",
                "front_office",
                "back_office",
                "kabid_pelayanan",
                "tim_teknis",
                "kepala_dinas",
                "bendahara"
            ]
        );
        let err = create_token(
            &Store::open(tempfile::tempdir().unwrap().path(), 8).unwrap(),
            &Roles::default(),
            "root",
            "",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role `root` (expected one of: admin, front_office, back_office, \
             kabid_pelayanan, tim_teknis, kepala_dinas, bendahara)"
        );
    }
}
