//! `[[flow]]` and `[numbering]` of `permit.toml`, checked against the office's roles, the
//! effects vocabulary and `flow.rhai`; every problem is located at the key that causes it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{at_span, FieldDecl};
use crate::auth::Roles;
use crate::diagnostic::Diagnostic;
use crate::domain::flow::{valid_step_key, Effect, Flow, Step};
use crate::domain::numbering::{Format, KindFormats, Numbering, PermitCode, KINDS};
use crate::scripts::Script;

/// One `[[flow]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepDef {
    step: String,
    label: String,
    role: String,
    #[serde(default)]
    sla_days: Option<i64>,
    #[serde(default)]
    guard: Option<String>,
    #[serde(default)]
    effects: Vec<String>,
    #[serde(default)]
    returns_to: Option<Vec<String>>,
}

/// `[numbering]` as written; the kinds are the only sub-tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NumberingDef {
    #[serde(default)]
    registration: Option<String>,
    #[serde(default)]
    permit: Option<String>,
    /// `{J…J}`: the permit type's number in the office's list.
    #[serde(default)]
    type_number: Option<u32>,
    /// `{KDPER}`; the permit id in capitals when absent.
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    baru: Option<KindDef>,
    #[serde(default)]
    perubahan: Option<KindDef>,
    #[serde(default)]
    perpanjangan: Option<KindDef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KindDef {
    #[serde(default)]
    registration: Option<String>,
    #[serde(default)]
    permit: Option<String>,
}

/// Where a problem is written in `permit.toml`; the problems found, by their place in the file.
pub(super) struct Sink<'a> {
    pub path: &'a str,
    pub source: &'a str,
    pub located: &'a toml_edit::Document<&'a str>,
    found: Vec<(usize, Diagnostic)>,
}

impl<'a> Sink<'a> {
    pub fn new(path: &'a str, source: &'a str, located: &'a toml_edit::Document<&'a str>) -> Self {
        Self {
            path,
            source,
            located,
            found: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems in the order they are written in the file (the checks run step by step,
    /// then across steps).
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|(at, _)| *at);
        self.found.into_iter().map(|(_, d)| d).collect()
    }

    fn push(&mut self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) {
        let at = span.as_ref().map_or(0, |s| s.start);
        self.found
            .push((at, at_span(self.path, self.source, span, message)));
    }

    /// Where step `index` writes `key` (else where the step starts).
    fn step_span(&self, index: usize, key: &str) -> Option<std::ops::Range<usize>> {
        self.located
            .get("flow")
            .and_then(|item| FieldDecl::nth(item, index))
            .and_then(|decl| decl.span_of(key))
    }

    /// Where `[numbering]` (or its `kind` table) sets `key`: the value, else the key.
    fn numbering_span(&self, kind: Option<&str>, key: &str) -> Option<std::ops::Range<usize>> {
        let mut table = self.located.get("numbering")?.as_table_like()?;
        if let Some(kind) = kind {
            table = table.get(kind)?.as_table_like()?;
        }
        table
            .get(key)
            .and_then(toml_edit::Item::span)
            .or_else(|| table.key(key).and_then(toml_edit::Key::span))
    }
}

/// The flow of `defs`: step keys, roles, effects, `sla_days` and return targets checked.
pub(super) fn flow(defs: Vec<StepDef>, roles: &Roles, sink: &mut Sink<'_>) -> Flow {
    let mut steps: Vec<Step> = Vec::new();
    for (index, def) in defs.into_iter().enumerate() {
        let key = def.step;
        if !valid_step_key(&key) {
            sink.push(
                sink.step_span(index, "step"),
                format!("step key `{key}` must be lowercase letters, digits and `_`"),
            );
        }
        if steps.iter().any(|s| s.step == key) {
            sink.push(
                sink.step_span(index, "step"),
                format!("step `{key}` is declared twice"),
            );
        }
        if !roles.contains(&def.role) {
            sink.push(
                sink.step_span(index, "role"),
                format!(
                    "step `{key}`: unknown role `{}` (the office's roles: {})",
                    def.role,
                    roles.names().join(", ")
                ),
            );
        }
        let sla_days = match def.sla_days {
            None => None,
            Some(days) => match u32::try_from(days).ok().filter(|d| *d > 0) {
                Some(days) => Some(days),
                None => {
                    sink.push(
                        sink.step_span(index, "sla_days"),
                        format!(
                            "step `{key}`: `sla_days` must be a positive whole number of working days, not `{days}`"
                        ),
                    );
                    None
                }
            },
        };
        let mut effects = Vec::new();
        for name in &def.effects {
            match Effect::parse(name) {
                Some(effect) if effects.contains(&effect) => sink.push(
                    sink.step_span(index, "effects"),
                    format!("step `{key}`: effect `{name}` is listed twice"),
                ),
                Some(effect) => effects.push(effect),
                None => sink.push(
                    sink.step_span(index, "effects"),
                    format!(
                        "step `{key}`: unknown effect `{name}` (known: {})",
                        Effect::ALL
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if let Some(targets) = &def.returns_to {
            for target in targets {
                if !steps.iter().any(|s| &s.step == target) {
                    sink.push(
                        sink.step_span(index, "returns_to"),
                        format!(
                            "step `{key}`: `returns_to` names `{target}`, which is not a step before it"
                        ),
                    );
                }
            }
        }
        if let Some(guard) = &def.guard {
            if guard.is_empty() {
                sink.push(
                    sink.step_span(index, "guard"),
                    format!("step `{key}`: `guard` is empty; name a function of flow.rhai"),
                );
            }
        }
        steps.push(Step {
            step: key,
            label: def.label,
            role: def.role,
            sla_days,
            guard: def.guard,
            effects,
            returns_to: def.returns_to,
        });
    }
    Flow::new(steps)
}

/// Every step's guard is a `fn <guard>(app, params)` of `flow.rhai`.
pub(super) fn check_guards(id: &str, flow: &Flow, script: Option<&Script>, sink: &mut Sink<'_>) {
    for (index, step) in flow.steps().iter().enumerate() {
        let Some(guard) = step.guard.as_deref().filter(|g| !g.is_empty()) else {
            continue;
        };
        match script {
            Some(s) if s.has_fn(guard, 2) => {}
            Some(s) => sink.push(
                sink.step_span(index, "guard"),
                format!(
                    "step `{}`: guard `{guard}` is not defined: {} has no `fn {guard}(app, params)`",
                    step.step,
                    s.file()
                ),
            ),
            None => sink.push(
                sink.step_span(index, "guard"),
                format!(
                    "step `{}`: guard `{guard}` needs `{id}/flow.rhai` with `fn {guard}(app, params)`",
                    step.step
                ),
            ),
        }
    }
}

/// A step with `issue_permit` needs a permit number format for every kind.
pub(super) fn check_effects(flow: &Flow, numbering: &Numbering, sink: &mut Sink<'_>) {
    for (index, step) in flow.steps().iter().enumerate() {
        if step.has_effect(Effect::IssuePermit) && !numbering.permit_for_every_kind() {
            let missing: Vec<&str> = KINDS
                .iter()
                .copied()
                .filter(|k| numbering.permit(k).is_none())
                .collect();
            sink.push(
                sink.step_span(index, "effects"),
                format!(
                    "step `{}`: effect `issue_permit` needs a permit number format (`permit` in [numbering]); none for {}",
                    step.step,
                    missing.join(", ")
                ),
            );
        }
    }
}

/// The permit type's number formats; without `[numbering]`, the default registration format
/// and no permit number.
pub(super) fn numbering(id: &str, def: Option<NumberingDef>, sink: &mut Sink<'_>) -> Numbering {
    let def = def.unwrap_or_default();
    let mut parse = |kind: Option<&str>, key: &str, text: Option<&String>, type_number: bool| {
        let text = text?;
        let at = || match kind {
            Some(k) => format!("[numbering.{k}] {key}"),
            None => format!("[numbering] {key}"),
        };
        match Format::parse(text) {
            Ok(format) => {
                if format.uses_type_number() && !type_number {
                    sink.push(
                        sink.numbering_span(kind, key),
                        format!(
                            "{}: `{{J…J}}` prints the permit type's number; set `type_number` in [numbering]",
                            at()
                        ),
                    );
                }
                Some(format)
            }
            Err(e) => {
                sink.push(
                    sink.numbering_span(kind, key),
                    format!("{}: `{text}`: {e}", at()),
                );
                None
            }
        }
    };
    let has_number = def.type_number.is_some();
    let registration = parse(None, "registration", def.registration.as_ref(), has_number);
    let permit = parse(None, "permit", def.permit.as_ref(), has_number);
    let mut kinds = BTreeMap::new();
    for (kind, formats) in [
        ("baru", &def.baru),
        ("perubahan", &def.perubahan),
        ("perpanjangan", &def.perpanjangan),
    ] {
        let Some(formats) = formats else { continue };
        kinds.insert(
            kind.to_owned(),
            KindFormats {
                registration: parse(
                    Some(kind),
                    "registration",
                    formats.registration.as_ref(),
                    has_number,
                ),
                permit: parse(Some(kind), "permit", formats.permit.as_ref(), has_number),
            },
        );
    }
    let code = PermitCode {
        number: def.type_number,
        code: def.code.unwrap_or_else(|| id.to_uppercase()),
    };
    Numbering::new(registration, permit, kinds, code)
}
