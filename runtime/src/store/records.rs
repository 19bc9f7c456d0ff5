//! The records kept in redb. Each is stored as JSON inside an [`Envelope`] carrying its format
//! version, so an older record can be recognised and migrated.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::diagnostic::Diagnostic;

/// Version of every record format written by this build.
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub v: u32,
    pub data: T,
}

/// An activated release (its sources live in their own table).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ReleaseRecord {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub permits: Vec<String>,
    pub fixtures: usize,
    pub files: usize,
}

/// A release that passed every fixture, and the conditions it passed under: this engine build
/// and the office's limits, roles and connector settings ([`crate::release::TestConditions`]).
/// Built again under the same conditions (a restart), the same files give the
/// same results, so its fixtures need not run again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PassRecord {
    pub release: String,
    pub under: String,
    pub at: DateTime<Utc>,
}

/// Each time a release became the served one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ActivationRecord {
    pub release: String,
    pub at: DateTime<Utc>,
    pub by: String,
    pub reason: String,
}

/// Every candidate built, accepted or rejected, with what was wrong.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ReloadRecord {
    #[serde(default)]
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub trigger: String,
    pub release: String,
    pub accepted: bool,
    pub permits: usize,
    pub fixtures_passed: usize,
    pub fixtures_failed: usize,
    /// Of `fixtures_passed`, those not run in this build: their permit type was reused
    /// unchanged, or the whole release had passed them before (`passed_before`).
    #[serde(default)]
    pub fixtures_reused: usize,
    /// No fixture ran: this release passed them all before under the same engine and settings
    /// (a restart).
    #[serde(default)]
    pub passed_before: bool,
    pub duration_ms: u64,
    pub diagnostics: Vec<Diagnostic>,
    /// Nothing was built: the rules folder equals the active release.
    #[serde(default)]
    pub unchanged: bool,
    /// The release serving once this attempt was over (`null`: none).
    #[serde(default)]
    pub active: Option<String>,
    /// Why the entry exists when `accepted` alone would mislead: a start-up fallback to a
    /// stored release, a failing folder, a folder back to the active release.
    #[serde(default)]
    pub note: String,
}

/// One evaluation (validate or levy): what went in, what came out, under which release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DecisionRecord {
    #[serde(default)]
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub permit: String,
    pub kind: String,
    pub release: String,
    pub input: Json,
    pub output: Json,
    pub duration_us: u64,
}

/// An API token; only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TokenRecord {
    /// Short public handle (a prefix of the hash) that audit entries name.
    pub id: String,
    /// A role token's one role; empty for a user's token (the user's roles apply).
    pub role: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    /// The user whose token this is (absent in role tokens and in records written before users
    /// existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A member of the office's staff: the roles it acts in and the permit types it handles. Users
/// are never deleted (histories and the audit log name them); they are deactivated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserRecord {
    pub username: String,
    pub name: String,
    /// Nomor Induk Pegawai, the civil servant's number, if the user has one.
    #[serde(default)]
    pub nip: Option<String>,
    pub roles: Vec<String>,
    /// Permit type ids, or `["*"]` for every permit type.
    pub permits: Vec<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An admin action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AuditRecord {
    #[serde(default)]
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub detail: Json,
}

/// An admin's reactivation of a stored release, kept while the rules folder stays as it was
/// then: restarts and file events that change nothing do not undo a rollback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PinRecord {
    pub release: String,
    /// Content id of the rules folder when the pin was set ("" if it did not read).
    pub folder: String,
}

/// An entry of a listing: the record, or a placeholder for one that cannot be read (damaged, or
/// written nested deeper than JSON can be read back) so that one bad record never hides the rest.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Listed<T> {
    Record(T),
    Unreadable {
        seq: u64,
        /// Why it cannot be read.
        unreadable: String,
    },
}

impl<T> Listed<T> {
    pub fn record(&self) -> Option<&T> {
        match self {
            Listed::Record(r) => Some(r),
            Listed::Unreadable { .. } => None,
        }
    }
}
