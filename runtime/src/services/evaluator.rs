//! The evaluator: runs the evaluation pipeline ([`crate::permits::pipeline`]) for a request
//! against the active release, within a bounded number of slots, off the async workers, and
//! records every decision durably before answering.

use std::sync::Arc;
use std::time::Instant;

use chrono::{FixedOffset, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use super::recorder::Recorder;
use super::releases::Active;
use crate::config::{Language, Limits};
use crate::levy::Assessment;
use crate::metrics::Metrics;
use crate::permits::fields::FieldError;
pub use crate::permits::pipeline::Kind;
use crate::permits::pipeline::{self, Outcome};
use crate::release::Release;
use crate::scripts::{CallContext, ScriptError, ScriptErrorKind};
use crate::store::records::DecisionRecord;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("no release is active yet")]
    NoRelease,
    #[error("unknown permit type `{0}`")]
    UnknownPermit(String),
    #[error("rule failed: {0}")]
    Script(ScriptError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("permit type `{0}` has no levy")]
    NoLevy(String),
    /// The evaluation slots were closed: the server is shutting down.
    #[error("evaluation was interrupted")]
    Interrupted,
    /// The blocking task running the rules ended without an answer: a bug below the scripts'
    /// own error handling, not a fault of the rules or of storage.
    #[error("the evaluation task crashed: {0}")]
    Crashed(#[source] tokio::task::JoinError),
    /// The answer could not be put into the decision record's JSON.
    #[error("cannot encode the evaluation's answer: {0}")]
    Encode(#[source] serde_json::Error),
    /// Every evaluation slot stayed taken for the whole queue wait.
    #[error(
        "the server is busy: all {slots} evaluation slots stayed taken for {waited_ms} ms; retry shortly"
    )]
    Overloaded {
        slots: usize,
        waited_ms: u64,
        /// What `Retry-After` says: a slot frees up at the latest when a running script
        /// reaches its wall-clock limit.
        retry_after_secs: u64,
    },
}

/// The result of an evaluation.
#[derive(Debug)]
pub enum Evaluation {
    /// `/validate`'s answer, valid or not (both are a 200).
    Checked {
        errors: Vec<FieldError>,
        release: String,
    },
    /// `/levy` on valid data.
    Assessed {
        assessment: Assessment,
        release: String,
    },
    /// `/levy` on data that fails validation.
    Invalid {
        errors: Vec<FieldError>,
        release: String,
    },
}

impl Evaluation {
    /// How the metrics count it.
    fn outcome(&self) -> EvalOutcome {
        match self {
            // `/validate` answers invalid data with 200 and `valid: false`: count it as
            // invalid, as `/levy` does.
            Evaluation::Checked { errors, .. } if !errors.is_empty() => EvalOutcome::Invalid,
            Evaluation::Checked { .. } | Evaluation::Assessed { .. } => EvalOutcome::Ok,
            Evaluation::Invalid { .. } => EvalOutcome::Invalid,
        }
    }
}

/// The answer's body: what `/validate` and `/levy` return with a 200 (`{"valid", "errors",
/// "release"}`, or the assessment and `release`); for invalid levy data, what the decision log
/// keeps (`{"valid": false, "errors"}`; the API answers it with a 422).
impl Serialize for Evaluation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Checked<'a> {
            valid: bool,
            errors: &'a [FieldError],
            #[serde(skip_serializing_if = "Option::is_none")]
            release: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Assessed<'a> {
            #[serde(flatten)]
            assessment: Json,
            release: &'a str,
        }
        match self {
            Evaluation::Checked { errors, release } => Checked {
                valid: errors.is_empty(),
                errors,
                release: Some(release),
            }
            .serialize(s),
            Evaluation::Assessed {
                assessment,
                release,
            } => Assessed {
                assessment: assessment.to_json(),
                release,
            }
            .serialize(s),
            Evaluation::Invalid { errors, .. } => Checked {
                valid: false,
                errors,
                release: None,
            }
            .serialize(s),
        }
    }
}

/// How an evaluation ended, as the `outcome` label of the evaluation metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EvalOutcome {
    Ok,
    Invalid,
    Limit,
    ScriptError,
}

impl EvalOutcome {
    fn as_str(self) -> &'static str {
        match self {
            EvalOutcome::Ok => "ok",
            EvalOutcome::Invalid => "invalid",
            EvalOutcome::Limit => "limit",
            EvalOutcome::ScriptError => "script_error",
        }
    }
}

/// What the decision log keeps of an evaluation's result, and its metrics outcome; `None` when
/// nothing was evaluated (unknown permit type, no levy).
fn recorded(
    result: &Result<Evaluation, EvalError>,
) -> Option<Result<(Json, EvalOutcome), EvalError>> {
    Some(match result {
        Ok(evaluation) => serde_json::to_value(evaluation)
            .map(|output| (output, evaluation.outcome()))
            .map_err(EvalError::Encode),
        Err(EvalError::Script(e)) => Ok((
            serde_json::json!({ "error": e.to_string() }),
            if e.kind == ScriptErrorKind::Limit {
                EvalOutcome::Limit
            } else {
                EvalOutcome::ScriptError
            },
        )),
        Err(_) => return None,
    })
}

/// The evaluation itself, synchronous and pure apart from the script sandbox, with no office
/// date (`today()` fails, as in a fixture without `today`). The runtime's own messages are in
/// `language`.
pub fn run(
    release: &Release,
    permit_id: &str,
    kind: Kind,
    data: &Json,
    language: Language,
) -> Result<Evaluation, EvalError> {
    run_in(
        release,
        permit_id,
        kind,
        data,
        language,
        &CallContext::default(),
    )
}

/// [`run`] with the scripts' `context` (the office date of this evaluation).
pub fn run_in(
    release: &Release,
    permit_id: &str,
    kind: Kind,
    data: &Json,
    language: Language,
    context: &CallContext,
) -> Result<Evaluation, EvalError> {
    let permit = release
        .permits
        .get(permit_id)
        .ok_or_else(|| EvalError::UnknownPermit(permit_id.to_owned()))?;
    if kind == Kind::Levy && permit.levy.is_none() {
        return Err(EvalError::NoLevy(permit_id.to_owned()));
    }
    let outcome = pipeline::evaluate(
        permit,
        &release.host,
        context,
        data,
        &permit.script_params,
        kind,
        language,
    )
    .map_err(EvalError::Script)?;
    let release = release.id.clone();
    Ok(match (kind, outcome) {
        (Kind::Validate, Outcome::Invalid(errors)) => Evaluation::Checked { errors, release },
        (Kind::Validate, Outcome::Valid { .. }) => Evaluation::Checked {
            errors: Vec::new(),
            release,
        },
        (Kind::Levy, Outcome::Invalid(errors)) => Evaluation::Invalid { errors, release },
        (
            Kind::Levy,
            Outcome::Valid {
                assessment: Some(assessment),
            },
        ) => Evaluation::Assessed {
            assessment,
            release,
        },
        (Kind::Levy, Outcome::Valid { assessment: None }) => {
            return Err(EvalError::NoLevy(permit_id.to_owned()))
        }
    })
}

pub struct Evaluator {
    active: Active,
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    limits: Limits,
    language: Language,
    utc_offset: FixedOffset,
    /// Bounds the blocking threads scripts occupy under load.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Evaluator {
    pub(crate) fn new(
        active: Active,
        recorder: Arc<Recorder>,
        metrics: Arc<Metrics>,
        limits: Limits,
        language: Language,
        utc_offset: FixedOffset,
    ) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(
            limits.max_concurrent_evaluations.max(1),
        ));
        Self {
            active,
            recorder,
            metrics,
            limits,
            language,
            utc_offset,
            slots,
        }
    }

    /// Validates (and for `Levy`, assesses) `data` against permit `permit_id` of the active
    /// release, and records the decision durably before returning.
    pub async fn evaluate(
        &self,
        permit_id: &str,
        kind: Kind,
        data: Json,
    ) -> Result<Evaluation, EvalError> {
        let release = self.active.current().ok_or(EvalError::NoRelease)?;
        // Every answer waits for its record: while the database refuses writes, say so at once
        // instead of running the rules for nothing.
        if let Some(reason) = self.recorder.fault() {
            return Err(EvalError::Store(StoreError::Unavailable(reason)));
        }
        let permit_name = permit_id.to_owned();
        let today = Utc::now().with_timezone(&self.utc_offset).date_naive();
        let rel = release.clone();
        let language = self.language;
        let slot = self.slot().await?;
        let in_flight = self.metrics.evaluation_started();
        // Scripts are CPU work bounded by their limits; keep them off the async workers. The
        // input moves into that task and only its bounded record comes back. The slot and the
        // in-flight mark live inside the blocking task: a client that hangs up does not end
        // its script, so the slot must stay taken until the script itself ends.
        let max = self.limits.max_recorded_json_bytes;
        let (result, elapsed, record) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let context = CallContext::on(today);
            let result = run_in(&rel, &permit_name, kind, &data, language, &context);
            let elapsed = started.elapsed();
            // The slot bounds script work only; waiting for the durable write must not hold
            // it, or it would also cap how many decisions share one group commit.
            drop(in_flight);
            drop(slot);
            // INVARIANT: what one evaluation stores is bounded, whatever the request held:
            // input and output are each kept whole only up to `max_recorded_json_bytes`.
            // Bounding is CPU work too, so it happens here rather than on an async worker.
            let record = recorded(&result).map(|r| {
                r.map(|(output, outcome)| {
                    (
                        crate::store::bound::excerpt(data, max),
                        crate::store::bound::excerpt(output, max),
                        outcome,
                    )
                })
            });
            (result, elapsed, record)
        })
        .await
        .map_err(EvalError::Crashed)?;
        // Nothing was evaluated (unknown permit type, no levy): nothing to record.
        let Some(record) = record else {
            return result;
        };
        let (input, output, outcome) = record?;
        self.metrics
            .evaluation(permit_id, kind.as_str(), outcome.as_str());
        self.recorder
            .decision(DecisionRecord {
                seq: 0,
                at: Utc::now(),
                permit: permit_id.to_owned(),
                kind: kind.as_str().to_owned(),
                release: release.id.clone(),
                input,
                output,
                duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            })
            .await?;
        result
    }

    /// One of the `max_concurrent_evaluations` slots, waiting at most
    /// `evaluation_queue_timeout_ms` for it.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, EvalError> {
        let limits = &self.limits;
        let overloaded = || EvalError::Overloaded {
            slots: limits.max_concurrent_evaluations,
            waited_ms: limits.evaluation_queue_timeout_ms,
            retry_after_secs: limits.script_timeout_ms.div_ceil(1000).max(1),
        };
        let wait = Arc::clone(&self.slots).acquire_owned();
        match tokio::time::timeout(limits.evaluation_queue_timeout(), wait).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_closed)) => Err(EvalError::Interrupted),
            Err(_elapsed) => Err(overloaded()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_their_wire_shape_and_order() {
        let errors = vec![FieldError::new("fungsi", "wajib diisi")];
        let checked = Evaluation::Checked {
            errors: errors.clone(),
            release: "r1".into(),
        };
        assert_eq!(
            serde_json::to_string(&checked).unwrap(),
            r#"{"valid":false,"errors":[{"field":"fungsi","message":"wajib diisi"}],"release":"r1"}"#
        );
        let valid = Evaluation::Checked {
            errors: Vec::new(),
            release: "r1".into(),
        };
        assert_eq!(
            serde_json::to_string(&valid).unwrap(),
            r#"{"valid":true,"errors":[],"release":"r1"}"#
        );
        // What the decision log keeps of a levy on invalid data (the API answers a 422).
        let invalid = Evaluation::Invalid {
            errors,
            release: "r1".into(),
        };
        assert_eq!(
            serde_json::to_string(&invalid).unwrap(),
            r#"{"valid":false,"errors":[{"field":"fungsi","message":"wajib diisi"}]}"#
        );
        assert_eq!(checked.outcome(), EvalOutcome::Invalid);
        assert_eq!(valid.outcome(), EvalOutcome::Ok);
        assert_eq!(invalid.outcome(), EvalOutcome::Invalid);
    }
}
