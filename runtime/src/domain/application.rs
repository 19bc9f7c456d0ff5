//! An application for a permit as the office keeps it: who applied, the form data, where it is in
//! its permit type's flow, its numbers and its history. Plain values; the store keeps them and
//! the applications service changes them.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// What the application asks for. Numbering formats may differ per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    #[default]
    Baru,
    Perubahan,
    Perpanjangan,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Baru => "baru",
            AppKind::Perubahan => "perubahan",
            AppKind::Perpanjangan => "perpanjangan",
        }
    }
}

/// Where an application is in its life. The levy cycle adds its own statuses later; clients
/// treat an unknown status as "in progress somewhere".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Stored incomplete (e.g. arrived from OSS RBA); no number, not in the flow.
    Draft,
    /// Submitted and at a step of its flow.
    InProgress,
    /// Advanced from the last step.
    Completed,
    /// Ended by `reject`.
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Rejected => "rejected",
        }
    }

    /// Whether the application has left the flow for good.
    pub fn is_ended(self) -> bool {
        matches!(self, Status::Completed | Status::Rejected)
    }
}

/// The applicant as the office records them. Only `name` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Applicant {
    pub name: String,
    #[serde(default)]
    pub nik: Option<String>,
    #[serde(default)]
    pub npwp: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// One entry of an application's history: every change, who made it, under which release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub by: String,
    /// `created`, `submitted`, `advanced`, `returned`, `rejected`, `completed`, `data_changed`;
    /// by a connector also `external_changed` and `note`.
    pub action: String,
    /// The step before the change (`null` when it was not in the flow).
    pub from: Option<String>,
    /// The step after the change (`null` when it left the flow or was not in it).
    pub to: Option<String>,
    pub note: Option<String>,
    pub release: String,
}

/// An application as stored. What the API adds at read time (`step_due_on`, `step_removed`)
/// depends on the active release and is not stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    /// `APP-<n>`, `n` the store's creation sequence (see [`app_id`]).
    pub id: String,
    pub permit: String,
    pub kind: AppKind,
    pub registration_number: Option<String>,
    /// When the office received it (a paper application may be older than its entry);
    /// `null` for a draft that did not state it.
    pub submitted_on: Option<NaiveDate>,
    pub status: Status,
    pub step: Option<String>,
    /// The office date the application entered its current step (its SLA counts from here).
    #[serde(default)]
    pub step_entered_on: Option<NaiveDate>,
    /// Bumped by every change; a client names the version it saw to avoid lost updates.
    pub version: u64,
    pub applicant: Applicant,
    pub data: Json,
    pub permit_number: Option<String>,
    /// The release of the last change.
    pub release: String,
    /// References attached by connectors, by connector name.
    #[serde(default)]
    pub external: BTreeMap<String, Json>,
    pub history: Vec<HistoryEntry>,
    pub created_at: DateTime<Utc>,
    /// The office date the record was created (orders drafts without `submitted_on`).
    pub created_on: NaiveDate,
}

impl Application {
    /// A new draft of permit type `permit`, made now (`at`, office date `on`) under `release`,
    /// with no history yet; the store gives it its id.
    pub fn draft(
        permit: String,
        kind: AppKind,
        applicant: Applicant,
        data: Json,
        release: String,
        at: DateTime<Utc>,
        on: NaiveDate,
    ) -> Self {
        Self {
            id: String::new(),
            permit,
            kind,
            registration_number: None,
            submitted_on: None,
            status: Status::Draft,
            step: None,
            step_entered_on: None,
            version: 1,
            applicant,
            data,
            permit_number: None,
            release,
            external: BTreeMap::new(),
            history: Vec::new(),
            created_at: at,
            created_on: on,
        }
    }

    /// Records that `by` created it, as its first history entry.
    pub fn created_by(&mut self, by: String) {
        self.history.push(HistoryEntry {
            at: self.created_at,
            by,
            action: "created".into(),
            from: None,
            to: None,
            note: None,
            release: self.release.clone(),
        });
    }

    /// The date lists order by (newest first) and `submitted_from`/`submitted_to` filter on:
    /// `submitted_on`, else the day the record was created.
    pub fn list_date(&self) -> NaiveDate {
        self.submitted_on.unwrap_or(self.created_on)
    }
}

/// The prefix of every application id.
pub const ID_PREFIX: &str = "APP-";

/// The id of the application created with store sequence `seq`.
pub fn app_id(seq: u64) -> String {
    format!("{ID_PREFIX}{seq}")
}

/// The store sequence of an application id; `None` if it is not one.
pub fn app_seq(id: &str) -> Option<u64> {
    let digits = id.strip_prefix(ID_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The event types of the outbox (the levy cycle adds its own).
pub mod event {
    pub const SUBMITTED: &str = "application.submitted";
    pub const ADVANCED: &str = "application.advanced";
    pub const RETURNED: &str = "application.returned";
    pub const REJECTED: &str = "application.rejected";
    pub const DATA_CHANGED: &str = "application.data_changed";
    pub const COMPLETED: &str = "application.completed";
    pub const PERMIT_ISSUED: &str = "permit.issued";
    /// A connector merged references into the application's `external[<connector>]`.
    pub const EXTERNAL_CHANGED: &str = "application.external_changed";
    /// A connector added a note to the application's history.
    pub const NOTE_ADDED: &str = "application.note_added";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_strangers_are_refused() {
        assert_eq!(app_id(17), "APP-17");
        assert_eq!(app_seq("APP-17"), Some(17));
        for bad in [
            "APP-", "APP-017", "APP-1x", "app-1", "17", "APP--1", "APP-+1",
        ] {
            assert_eq!(app_seq(bad), None, "{bad}");
        }
    }

    #[test]
    fn kinds_and_statuses_have_their_wire_names() {
        assert_eq!(
            serde_json::to_value(AppKind::Perpanjangan).unwrap(),
            "perpanjangan"
        );
        assert_eq!(
            serde_json::to_value(Status::InProgress).unwrap(),
            "in_progress"
        );
        assert_eq!(Status::InProgress.as_str(), "in_progress");
        assert!(Status::Rejected.is_ended() && !Status::Draft.is_ended());
    }
}
