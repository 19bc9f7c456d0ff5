//! Fixture tests of a permit type: `tests/<name>.json` with input data and expected outcome.
//! Every fixture runs on every candidate release; one failure rejects the candidate.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeSet;

use super::pipeline;
use super::Permit;
use crate::config::Language;
use crate::diagnostic::Diagnostic;
use crate::domain::value::from_json;
use crate::scripts::api::parse_decimal;
use crate::scripts::shared::SharedMap;
use crate::scripts::value::decimal_string;
use crate::scripts::{CallContext, ScriptHost};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub description: Option<String>,
    /// Overrides of `[params]` keys for this fixture only.
    #[serde(default)]
    pub params: serde_json::Map<String, Json>,
    pub data: Json,
    /// The office date `today()` answers while this fixture runs (YYYY-MM-DD).
    #[serde(default)]
    pub today: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub valid: Option<bool>,
    /// The exact set of field names that have errors.
    pub errors: Option<Vec<String>>,
    pub total: Option<Json>,
    pub items: Option<Vec<ExpectItem>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectItem {
    pub code: String,
    pub amount: Json,
    #[serde(default)]
    pub label: Option<String>,
}

impl Fixture {
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostic> {
        serde_json::from_str(text).map_err(|e| {
            let message = e.to_string();
            // serde_json appends " at line L column C"; the location is ours to print.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_owned();
            Diagnostic::new(file, e.line(), e.column(), message)
        })
    }
}

fn money(v: &Json) -> Option<Decimal> {
    match v {
        Json::String(s) => parse_decimal(s.trim()),
        Json::Number(n) => parse_decimal(&n.to_string()),
        _ => None,
    }
}

/// Runs one fixture; a failure says which fixture, what was expected and what came out.
pub fn run(
    permit: &Permit,
    host: &ScriptHost,
    file: &str,
    fixture: &Fixture,
) -> Result<(), Diagnostic> {
    let today = match &fixture.today {
        Some(t) => Some(crate::scripts::api::parse_date(t).map_err(|_| {
            Diagnostic::file(file, format!("`today` is not a date (YYYY-MM-DD): `{t}`"))
        })?),
        None => None,
    };
    run_at(permit, host, &CallContext { today }, file, fixture)
}

fn run_at(
    permit: &Permit,
    host: &ScriptHost,
    context: &CallContext,
    file: &str,
    fixture: &Fixture,
) -> Result<(), Diagnostic> {
    let fail = |message: String, expected: Json, actual: Json| Diagnostic {
        expected: Some(Box::new(expected)),
        actual: Some(Box::new(actual)),
        ..Diagnostic::file(file, message)
    };
    let mut params = permit.params.clone();
    for (key, value) in &fixture.params {
        let v =
            from_json(value).map_err(|e| Diagnostic::file(file, format!("params.{key}: {e}")))?;
        if !params.set(key, v) {
            return Err(Diagnostic::file(
                file,
                format!("fixture overrides unknown param `{key}`"),
            ));
        }
    }
    // Converted once per fixture that overrides params; the others share the permit's.
    let overridden;
    let params = if fixture.params.is_empty() {
        &permit.script_params
    } else {
        overridden = SharedMap::from_params(&params);
        &overridden
    };
    let in_fixture = |e: crate::scripts::ScriptError| Diagnostic {
        message: format!("{} (while running fixture {file})", e.message),
        ..e.location
    };
    // Fixtures assert field names only; messages are in the default language.
    let checked = pipeline::check(
        permit,
        host,
        context,
        &fixture.data,
        params,
        Language::default(),
    )
    .map_err(in_fixture)?;
    let (errors, valid_data) = match checked {
        Err(errors) => (errors, None),
        Ok(valid) => (Vec::new(), Some(valid)),
    };
    let valid = errors.is_empty();
    let error_fields: BTreeSet<String> = errors.iter().map(|e| e.field.clone()).collect();
    let errors_json = || pipeline::errors_json(&errors);
    if let Some(expected) = fixture.expect.valid {
        if expected != valid {
            return Err(fail(
                format!("expected valid = {expected}, got {valid}"),
                Json::Bool(expected),
                errors_json(),
            ));
        }
    }
    if let Some(expected) = &fixture.expect.errors {
        let expected: BTreeSet<String> = expected.iter().cloned().collect();
        if expected != error_fields {
            return Err(fail(
                format!(
                    "expected errors on [{}], got [{}]",
                    expected.iter().cloned().collect::<Vec<_>>().join(", "),
                    error_fields.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                Json::Array(expected.iter().cloned().map(Json::String).collect()),
                errors_json(),
            ));
        }
    }
    let wants_levy = fixture.expect.total.is_some() || fixture.expect.items.is_some();
    if !valid {
        if wants_levy {
            return Err(fail(
                "expected a levy, but the data is invalid".into(),
                fixture.expect.total.clone().unwrap_or(Json::Null),
                errors_json(),
            ));
        }
        return Ok(());
    }
    let assessment = match valid_data {
        Some(valid) => valid.assess().map_err(in_fixture)?,
        None => None,
    };
    let Some(assessment) = assessment else {
        if wants_levy {
            return Err(Diagnostic::file(
                file,
                "expects a levy, but the permit has no levy.rhai",
            ));
        }
        return Ok(());
    };
    if let Some(total) = &fixture.expect.total {
        let expected =
            money(total).ok_or_else(|| Diagnostic::file(file, "expect.total is not a decimal"))?;
        if expected != assessment.total() {
            return Err(fail(
                format!(
                    "expected total {}, got {}",
                    decimal_string(expected),
                    decimal_string(assessment.total())
                ),
                Json::String(decimal_string(expected)),
                assessment.to_json(),
            ));
        }
    }
    if let Some(items) = &fixture.expect.items {
        let codes: Vec<&str> = assessment.items().iter().map(|i| i.code.as_str()).collect();
        let wanted: Vec<&str> = items.iter().map(|i| i.code.as_str()).collect();
        if codes != wanted {
            return Err(fail(
                format!(
                    "expected items [{}], got [{}]",
                    wanted.join(", "),
                    codes.join(", ")
                ),
                Json::Array(
                    wanted
                        .iter()
                        .map(|c| Json::String((*c).to_owned()))
                        .collect(),
                ),
                assessment.to_json(),
            ));
        }
        for (want, got) in items.iter().zip(assessment.items()) {
            let amount = money(&want.amount).ok_or_else(|| {
                Diagnostic::file(file, format!("amount of `{}` is not a decimal", want.code))
            })?;
            if amount != got.amount {
                return Err(fail(
                    format!(
                        "expected {} = {}, got {}",
                        want.code,
                        decimal_string(amount),
                        decimal_string(got.amount)
                    ),
                    Json::String(decimal_string(amount)),
                    Json::String(decimal_string(got.amount)),
                ));
            }
            if let Some(label) = want.label.as_ref().filter(|l| **l != got.label) {
                return Err(fail(
                    format!(
                        "expected label of {} = `{label}`, got `{}`",
                        want.code, got.label
                    ),
                    Json::String(label.clone()),
                    Json::String(got.label.clone()),
                ));
            }
        }
    }
    Ok(())
}
