//! The one evaluation pipeline: the runtime's field checks, then `validate.rhai`, then for a
//! levy `levy.rhai`. The evaluator service runs it for requests and every fixture runs it while
//! a candidate is tested, so what a fixture proves is what a request gets.

use serde::Serialize;
use serde_json::Value as Json;

use super::fields::FieldError;
use super::Permit;
use crate::config::Language;
use crate::diagnostic::Diagnostic;
use crate::domain::value::from_json;
use crate::domain::Record;
use crate::levy::Assessment;
use crate::scripts::shared::SharedMap;
use crate::scripts::value::to_dynamic;
use crate::scripts::{CallContext, ScriptError, ScriptErrorKind, ScriptHost};

/// What a request may evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Validate,
    Levy,
}

impl Kind {
    /// The name in routes, decision records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Validate => "validate",
            Kind::Levy => "levy",
        }
    }
}

/// What the rules said about one application's data.
#[derive(Debug)]
pub enum Outcome {
    /// The data fails a field check or `validate.rhai`; nothing was assessed.
    Invalid(Vec<FieldError>),
    /// The data is valid. `assessment` is `Some` when a levy was asked for and the permit has
    /// one.
    Valid { assessment: Option<Assessment> },
}

/// Runs the pipeline for `kind` on `data` with `params` (the permit's own, or a fixture's
/// overrides of them) in the scripts' `context` (the office date). Runtime messages are in
/// `language`.
pub fn evaluate(
    permit: &Permit,
    host: &ScriptHost,
    context: &CallContext,
    data: &Json,
    params: &SharedMap,
    kind: Kind,
    language: Language,
) -> Result<Outcome, ScriptError> {
    let valid = match check(permit, host, context, data, params, language)? {
        Ok(valid) => valid,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let assessment = match kind {
        Kind::Validate => None,
        Kind::Levy => valid.assess()?,
    };
    Ok(Outcome::Valid { assessment })
}

/// The first stage alone: field checks and `validate.rhai`. Valid data comes back ready to be
/// assessed, invalid data as its errors.
pub fn check<'a>(
    permit: &'a Permit,
    host: &'a ScriptHost,
    context: &'a CallContext,
    data: &Json,
    params: &'a SharedMap,
    language: Language,
) -> Result<Result<Valid<'a>, Vec<FieldError>>, ScriptError> {
    let checked = permit.check(host, context, data, params, language)?;
    if !checked.errors.is_empty() {
        return Ok(Err(checked.errors));
    }
    Ok(Ok(Valid {
        permit,
        host,
        context,
        params,
        data: checked.data,
    }))
}

/// Data that passed every check, with what assessing it needs.
pub struct Valid<'a> {
    permit: &'a Permit,
    host: &'a ScriptHost,
    context: &'a CallContext,
    params: &'a SharedMap,
    data: Record,
}

impl Valid<'_> {
    /// Runs `levy.rhai`; `None` when the permit has no levy.
    pub fn assess(self) -> Result<Option<Assessment>, ScriptError> {
        self.permit
            .assess(self.host, self.context, self.data, self.params)
    }
}

/// Asks guard `name` of the permit's `flow.rhai` (`fn name(app, params)`) whether `app` (the
/// application as the API shows it; numbers reach the script as exact decimals) may advance:
/// `None` allows it, `Some(message)` refuses it with the guard's message. A guard returning
/// anything else, or failing, is a script error naming the guard (the service wraps it as
/// `EvalError::Script`, which the API already maps). Run it on the blocking pool like every
/// evaluation.
pub fn guard(
    permit: &Permit,
    host: &ScriptHost,
    name: &str,
    app: &Json,
    context: &CallContext,
) -> Result<Option<String>, ScriptError> {
    guard_with(permit, host, name, app, context, &permit.script_params)
}

/// [`guard`] with `params` in place of the permit's own (a fixture's overrides).
pub fn guard_with(
    permit: &Permit,
    host: &ScriptHost,
    name: &str,
    app: &Json,
    context: &CallContext,
    params: &SharedMap,
) -> Result<Option<String>, ScriptError> {
    let file = format!("{}/flow.rhai", permit.id);
    let failure = |message: String| ScriptError {
        kind: ScriptErrorKind::Runtime,
        location: Diagnostic::file(&file, ""),
        message,
    };
    let script = permit
        .guards()
        .filter(|s| s.has_fn(name, 2))
        .ok_or_else(|| {
            failure(format!(
                "guard `{name}`: {file} has no `fn {name}(app, params)`"
            ))
        })?;
    let app =
        from_json(app).map_err(|e| failure(format!("guard `{name}`: the application: {e}")))?;
    let out = host.call(
        context,
        script,
        name,
        (to_dynamic(&app), rhai::Dynamic::from(params.clone())),
    )?;
    if out.is_unit() {
        return Ok(None);
    }
    match out.into_immutable_string() {
        Ok(message) => Ok(Some(message.to_string())),
        Err(type_name) => Err(ScriptError {
            location: Diagnostic::new(&file, script.line_of(name), 0, ""),
            ..failure(format!(
                "guard `{name}` must return () to allow or a message (text) to refuse, not {type_name}"
            ))
        }),
    }
}

/// Field errors as the API shows them, `[{"field": .., "message": ..}]`.
pub fn errors_json(errors: &[FieldError]) -> Json {
    Json::Array(
        errors
            .iter()
            .map(|e| serde_json::json!({ "field": e.field, "message": e.message }))
            .collect(),
    )
}
