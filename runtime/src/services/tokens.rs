//! API tokens as the HTTP surface uses them: a lookup per admin request, creation and
//! revocation, each on the blocking pool (token writes are durable, synchronous commits).

use crate::auth::{self, AuthError, Resolved, Roles};
use crate::store::records::TokenRecord;
use crate::store::{Store, StoreError};

pub struct Tokens {
    store: Store,
    /// The roles a new token may carry (the office's configuration).
    roles: Roles,
}

impl Tokens {
    pub(crate) fn new(store: Store, roles: Roles) -> Self {
        Self { store, roles }
    }

    /// The record of a presented token, if it is known (and not revoked).
    pub async fn lookup(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let token = token.to_owned();
        self.store.blocking(move |s| auth::lookup(s, &token)).await
    }

    /// Who a presented token stands for now (read at every request: a revocation, a
    /// deactivation or a change of a user's roles applies to the next one).
    pub async fn authenticate(&self, token: &str) -> Result<Resolved, StoreError> {
        let token = token.to_owned();
        self.store
            .blocking(move |s| auth::authenticate(s, &token))
            .await
    }

    /// Creates a token with `role`; returns the secret (shown once) and its record.
    pub async fn create(
        &self,
        role: String,
        label: String,
    ) -> Result<(String, TokenRecord), AuthError> {
        let roles = self.roles.clone();
        self.store
            .blocking(move |s| auth::create_token(s, &roles, &role, &label))
            .await
    }

    /// Revokes the token with public id `id`; `None` if there is none.
    pub async fn revoke(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let id = id.to_owned();
        self.store
            .blocking(move |s| auth::revoke_token(s, &id))
            .await
    }
}
