//! Fixture tests of a permit type: `tests/<name>.json` with input data and expected outcome, or
//! with an application and what a guard of `flow.rhai` must say about it. Every fixture runs on
//! every candidate release; one failure rejects the candidate.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::BTreeSet;

use super::pipeline;
use super::{Permit, PermitFiles};
use crate::config::Language;
use crate::diagnostic::Diagnostic;
use crate::domain::value::from_json;
use crate::scripts::api::parse_decimal;
use crate::scripts::shared::SharedMap;
use crate::scripts::value::decimal_string;
use crate::scripts::{CallContext, ScriptHost};

/// One fixture file: a data fixture (`"data"`), or a guard fixture (`"guard"`).
#[derive(Debug, Clone)]
pub enum Fixture {
    Data(DataFixture),
    Guard(GuardFixture),
}

/// `{"data": {...}, "expect": {"valid", "errors", "total", "items"}}`: the pipeline's outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFixture {
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

/// `{"guard": "berkas_lengkap", "application": {...}, "expect": {"allowed": false, "message":
/// "..."}}`: what guard `guard` of `flow.rhai` answers for `application` (the application as
/// the API shows it). `message` is optional; `today` and `params` as in a data fixture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardFixture {
    #[serde(default)]
    pub description: Option<String>,
    pub guard: String,
    #[serde(default)]
    pub params: serde_json::Map<String, Json>,
    pub application: Json,
    #[serde(default)]
    pub today: Option<String>,
    pub expect: GuardExpect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardExpect {
    pub allowed: bool,
    /// The refusal's exact message (only with `allowed: false`).
    #[serde(default)]
    pub message: Option<String>,
}

/// The fixture files of permit folder `id` in path order, each with its full path, or the
/// problem of a file in `tests/` that is not a fixture.
pub fn listed<'a>(
    id: &'a str,
    files: &'a PermitFiles<'_>,
) -> impl Iterator<Item = (Result<String, Diagnostic>, &'a str)> + 'a {
    files
        .iter()
        .filter(|(p, _)| p.starts_with("tests/"))
        .map(move |(path, text)| {
            let full = format!("{id}/{path}");
            let named = if path.ends_with(".json") {
                Ok(full)
            } else {
                Err(Diagnostic::file(
                    full,
                    "fixtures are `tests/<name>.json` files",
                ))
            };
            (named, *text)
        })
}

/// Parses the fixtures of permit folder `id` (those [`listed`] as fixtures), in path order;
/// the problems are those of the files that do not parse.
pub fn parse_all(id: &str, files: &PermitFiles<'_>) -> (Vec<(String, Fixture)>, Vec<Diagnostic>) {
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for (full, text) in listed(id, files) {
        let Ok(full) = full else { continue };
        match Fixture::parse(&full, text) {
            Ok(f) => parsed.push((full, f)),
            Err(d) => problems.push(d),
        }
    }
    (parsed, problems)
}

impl Fixture {
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostic> {
        let located = |e: serde_json::Error| {
            let message = e.to_string();
            // serde_json appends " at line L column C"; the location is ours to print.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_owned();
            Diagnostic::new(file, e.line(), e.column(), message)
        };
        let is_guard = serde_json::from_str::<Json>(text)
            .map_err(located)?
            .get("guard")
            .is_some();
        if is_guard {
            serde_json::from_str(text)
                .map(Fixture::Guard)
                .map_err(located)
        } else {
            serde_json::from_str(text)
                .map(Fixture::Data)
                .map_err(located)
        }
    }

    fn today(&self) -> Option<&String> {
        match self {
            Fixture::Data(f) => f.today.as_ref(),
            Fixture::Guard(f) => f.today.as_ref(),
        }
    }

    fn params(&self) -> &serde_json::Map<String, Json> {
        match self {
            Fixture::Data(f) => &f.params,
            Fixture::Guard(f) => &f.params,
        }
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
    let today = match fixture.today() {
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
    let mut params = permit.params.clone();
    for (key, value) in fixture.params() {
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
    let params = if fixture.params().is_empty() {
        &permit.script_params
    } else {
        overridden = SharedMap::from_params(&params);
        &overridden
    };
    match fixture {
        Fixture::Data(fixture) => run_data(permit, host, context, params, file, fixture),
        Fixture::Guard(fixture) => run_guard(permit, host, context, params, file, fixture),
    }
}

fn in_fixture(file: &str) -> impl Fn(crate::scripts::ScriptError) -> Diagnostic + '_ {
    move |e| Diagnostic {
        message: format!("{} (while running fixture {file})", e.message),
        ..e.location
    }
}

fn failure(file: &str, message: String, expected: Json, actual: Json) -> Diagnostic {
    Diagnostic {
        expected: Some(Box::new(expected)),
        actual: Some(Box::new(actual)),
        ..Diagnostic::file(file, message)
    }
}

fn run_guard(
    permit: &Permit,
    host: &ScriptHost,
    context: &CallContext,
    params: &SharedMap,
    file: &str,
    fixture: &GuardFixture,
) -> Result<(), Diagnostic> {
    let name = &fixture.guard;
    if !permit.guards().is_some_and(|s| s.has_fn(name, 2)) {
        return Err(Diagnostic::file(
            file,
            format!(
                "guard `{name}` is not defined: {}/flow.rhai has no `fn {name}(app, params)`",
                permit.id
            ),
        ));
    }
    let answer = pipeline::guard_with(permit, host, name, &fixture.application, context, params)
        .map_err(in_fixture(file))?;
    let shown = |answer: &Option<String>| match answer {
        None => serde_json::json!({ "allowed": true }),
        Some(message) => serde_json::json!({ "allowed": false, "message": message }),
    };
    let mut expected = serde_json::json!({ "allowed": fixture.expect.allowed });
    if let (Some(message), Some(slot)) = (&fixture.expect.message, expected.as_object_mut()) {
        slot.insert("message".to_owned(), Json::String(message.clone()));
    }
    let allowed = answer.is_none();
    if allowed != fixture.expect.allowed {
        return Err(failure(
            file,
            format!(
                "guard `{name}`: expected allowed = {}, got {allowed}",
                fixture.expect.allowed
            ),
            expected,
            shown(&answer),
        ));
    }
    if let (Some(want), Some(got)) = (&fixture.expect.message, &answer) {
        if want != got {
            return Err(failure(
                file,
                format!("guard `{name}`: expected the message `{want}`, got `{got}`"),
                expected,
                shown(&answer),
            ));
        }
    }
    Ok(())
}

fn run_data(
    permit: &Permit,
    host: &ScriptHost,
    context: &CallContext,
    params: &SharedMap,
    file: &str,
    fixture: &DataFixture,
) -> Result<(), Diagnostic> {
    let fail =
        |message: String, expected: Json, actual: Json| failure(file, message, expected, actual);
    let in_fixture = in_fixture(file);
    // Fixtures assert field names only; messages are in the default language.
    let checked = pipeline::check(
        permit,
        host,
        context,
        &fixture.data,
        params,
        Language::default(),
    )
    .map_err(&in_fixture)?;
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
        Some(valid) => valid.assess().map_err(&in_fixture)?,
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
