//! API tokens: random secrets shown once, stored only as SHA-256 hashes, each with one role.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::store::records::TokenRecord;
use crate::store::{Op, Store, StoreError};

/// The office's roles (see shared permit-flow notes); `admin` manages releases and tokens.
pub const ROLES: &[&str] = &[
    "admin",
    "front_office",
    "back_office",
    "kabid_pelayanan",
    "tim_teknis",
    "kepala_dinas",
];
pub const ADMIN: &str = "admin";
/// Where the first admin token is written on first start, inside the data folder.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
const TOKEN_PREFIX: &str = "pintu_";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown role `{0}` (expected one of: {roles})", roles = ROLES.join(", "))]
    UnknownRole(String),
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

/// Creates a token with `role` and returns the secret; only its hash is stored.
pub fn create_token(
    store: &Store,
    role: &str,
    label: &str,
) -> Result<(String, TokenRecord), AuthError> {
    if !ROLES.contains(&role) {
        return Err(AuthError::UnknownRole(role.to_owned()));
    }
    let token = generate()?;
    let hash = hash(&token);
    let record = TokenRecord {
        id: hash.get(..12).unwrap_or(&hash).to_owned(),
        role: role.to_owned(),
        label: label.to_owned(),
        created_at: Utc::now(),
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

/// On first start there is no admin yet: create one and leave the secret in
/// `DATA/admin.token`, readable by the server's user only. Returns the file written, if any.
pub fn ensure_admin(store: &Store, data_dir: &Path) -> Result<Option<PathBuf>, AuthError> {
    if store.tokens()?.iter().any(|t| t.role == ADMIN) {
        return Ok(None);
    }
    let (token, _) = create_token(store, ADMIN, "first admin, created at start")?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_secret(&path, &token).map_err(|source| AuthError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(Some(path))
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
            create_token(&store, "root", ""),
            Err(AuthError::UnknownRole(_))
        ));
        assert!(lookup(&store, "pintu_nope").unwrap().is_none());
        let (token, _) = create_token(&store, "front_office", "loket 1").unwrap();
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
        let (kept, _) = create_token(&store, "back_office", "").unwrap();
        let (gone, record) = create_token(&store, "front_office", "loket 2").unwrap();
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
}
