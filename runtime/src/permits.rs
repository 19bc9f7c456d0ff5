//! Permit types: one folder each, `permit.toml` plus optional `validate.rhai`, `levy.rhai` and
//! `flow.rhai` (the guards of its flow).

pub mod fields;
pub mod fixtures;
mod flow;
pub mod messages;
pub mod pipeline;

use std::collections::BTreeMap;

use rhai::Dynamic;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::auth::Roles;
use crate::config::Language;
use crate::diagnostic::Diagnostic;
use crate::domain::flow::Flow;
use crate::domain::numbering::Numbering;
use crate::domain::{Params, Record, Value};
use crate::levy::{self, Assessment};
use crate::scripts::shared::{into_map, SharedMap};
use crate::scripts::value::record_to_map;
use crate::scripts::{CallContext, Script, ScriptError, ScriptErrorKind, ScriptHost};
use fields::{check_record, Field, FieldDef, FieldError, FieldType};
use messages::Problem;

/// A document the applicant must (or may) supply.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub code: String,
    pub name: String,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

/// `permit.toml` as written; `[params]` and `[tables]` are read separately with their exact
/// literal text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PermitFile {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    documents_field: Option<String>,
    #[serde(default)]
    fields: Vec<FieldDef>,
    #[serde(default)]
    requirements: Vec<Requirement>,
    #[serde(default)]
    #[allow(dead_code, reason = "read exactly through toml_edit")]
    params: toml::Table,
    #[serde(default)]
    #[allow(dead_code, reason = "read exactly through toml_edit")]
    tables: toml::Table,
    #[serde(default)]
    flow: Vec<flow::StepDef>,
    #[serde(default)]
    numbering: Option<flow::NumberingDef>,
}

/// One permit type of a release, compiled and ready to evaluate.
pub struct Permit {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub fields: Vec<Field>,
    pub requirements: Vec<Requirement>,
    pub documents_field: Option<String>,
    /// `[params]` plus `tables`.
    pub params: Params,
    /// The params as scripts see them, converted once per release and shared by every call.
    pub script_params: SharedMap,
    pub validate: Option<Script>,
    pub levy: Option<Script>,
    /// How many fixtures (`tests/*.json`) the permit type has. The fixtures themselves are
    /// parsed and run by the release build ([`fixtures::parse_all`]) and not kept: at 1,000
    /// permit types they held about a quarter of the server's memory, and a release reusing
    /// this permit needs only their number.
    pub fixture_count: usize,
    flow: Flow,
    numbering: Numbering,
    /// `flow.rhai`: the guards of the flow's steps.
    guards: Option<Script>,
}

/// The outcome of checking an application's data.
pub struct Checked {
    /// The data as exact domain values (only meaningful when `errors` is empty).
    pub data: Record,
    pub errors: Vec<FieldError>,
}

/// The files of one permit folder, keyed by their path inside the folder.
pub type PermitFiles<'a> = BTreeMap<&'a str, &'a str>;

impl Permit {
    /// Builds the permit `id` from its folder's files; every problem becomes a diagnostic. The
    /// roles of its flow's steps must be among the office's `roles`.
    pub fn load(
        id: &str,
        files: &PermitFiles<'_>,
        host: &ScriptHost,
        roles: &Roles,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let toml_path = format!("{id}/permit.toml");
        let Some(source) = files.get("permit.toml") else {
            return Err(vec![Diagnostic::file(
                format!("{id}/permit.toml"),
                "permit folder has no permit.toml",
            )]);
        };
        let file: PermitFile = match toml::from_str(source) {
            Ok(f) => f,
            Err(e) => {
                return Err(vec![at_span(
                    &toml_path,
                    source,
                    e.span(),
                    e.message().trim_end(),
                )]);
            }
        };
        // Parsed once with its spans, for the locations of problems; the values are read from
        // the editable form, which keeps every literal's exact text.
        let located = match toml_edit::Document::parse(*source) {
            Ok(d) => d,
            Err(e) => {
                return Err(vec![at_span(
                    &toml_path,
                    source,
                    e.span(),
                    e.message().trim_end(),
                )])
            }
        };
        let doc = located.clone().into_mut();

        let params = match doc.get("params").map(crate::domain::value::from_toml) {
            None => Record::new(),
            Some(Ok(Value::Map(p))) => p,
            Some(Ok(_)) => Record::new(),
            Some(Err(e)) => {
                diags.push(at_span(
                    &toml_path,
                    source,
                    doc.get("params")
                        .zip(located.get("params"))
                        .and_then(|(item, at)| unconvertible_span(item, at)),
                    format!("[params]: {e}"),
                ));
                Record::new()
            }
        };
        if params.contains_key("tables") {
            let key = located
                .get("params")
                .and_then(toml_edit::Item::as_table_like)
                .and_then(|t| t.key("tables"))
                .and_then(toml_edit::Key::span);
            diags.push(at_span(
                &toml_path,
                source,
                key,
                "`tables` is reserved in [params]; declare reference tables under [tables.<name>]",
            ));
        }
        let mut tables = match doc.get("tables").map(crate::domain::value::from_toml) {
            None => Record::new(),
            Some(Ok(Value::Map(t))) => t,
            Some(Ok(_)) => Record::new(),
            Some(Err(e)) => {
                diags.push(at_span(
                    &toml_path,
                    source,
                    doc.get("tables")
                        .zip(located.get("tables"))
                        .and_then(|(item, at)| unconvertible_span(item, at)),
                    format!("[tables]: {e}"),
                ));
                Record::new()
            }
        };
        for (path, text) in files.iter().filter(|(p, _)| p.starts_with("tables/")) {
            let full = format!("{id}/{path}");
            let Some(name) = path
                .strip_prefix("tables/")
                .and_then(|n| n.strip_suffix(".toml"))
                .filter(|n| !n.contains('/'))
            else {
                diags.push(Diagnostic::file(
                    full,
                    "reference tables are `tables/<name>.toml` files",
                ));
                continue;
            };
            match toml_edit::Document::parse(*text) {
                Ok(located) => {
                    match crate::domain::value::from_toml(located.clone().into_mut().as_item()) {
                        Ok(t) => {
                            if tables.insert(name.to_owned(), t).is_some() {
                                diags.push(Diagnostic::file(
                                    full,
                                    format!("table `{name}` is also declared in permit.toml"),
                                ));
                            }
                        }
                        Err(e) => {
                            let editable = located.clone().into_mut();
                            let span = unconvertible_span(editable.as_item(), located.as_item());
                            diags.push(at_span(&full, text, span, e));
                        }
                    }
                }
                Err(e) => diags.push(at_span(&full, text, e.span(), e.message().trim_end())),
            }
        }
        let params = Params::new(params, tables);

        let mut fields = Vec::new();
        for (index, def) in file.fields.into_iter().enumerate() {
            match Field::compile(def, "", &[index]) {
                Ok(f) => {
                    if fields.iter().any(|g: &Field| g.def.name == f.def.name) {
                        diags.push(at_span(
                            &toml_path,
                            source,
                            field_span(&located, &[index], "name"),
                            format!("field `{}` is declared twice", f.def.name),
                        ));
                    }
                    fields.push(f);
                }
                Err(e) => diags.push(at_span(
                    &toml_path,
                    source,
                    field_span(&located, &e.at, e.problem.key()),
                    e.to_string(),
                )),
            }
        }
        if let Some(doc_field) = &file.documents_field {
            let usable = fields
                .iter()
                .find(|f| &f.def.name == doc_field)
                .is_some_and(|f| {
                    f.def.kind == FieldType::List
                        && (matches!(f.def.items, Some(FieldType::Text | FieldType::Enum))
                            || f.def.fields.iter().any(|r| {
                                (r.name == "kode" || r.name == "code")
                                    && matches!(r.kind, FieldType::Text | FieldType::Enum)
                            }))
                });
            if !usable {
                diags.push(at_span(
                    &toml_path,
                    source,
                    located
                        .key("documents_field")
                        .and_then(toml_edit::Key::span),
                    format!(
                        "documents_field `{doc_field}` must name a declared list of codes \
                         (`items = \"text\"`) or of records with a `kode` field"
                    ),
                ));
            }
        }

        let mut compile = |name: &str, func: &str| -> Option<Script> {
            let text = files.get(name)?;
            let path = format!("{id}/{name}");
            match host.compile(&path, text) {
                Ok(s) if s.has_fn(func, 2) => Some(s),
                Ok(_) => {
                    diags.push(Diagnostic::file(
                        &path,
                        format!("must define `fn {func}(data, params)`"),
                    ));
                    None
                }
                Err(d) => {
                    diags.push(d);
                    None
                }
            }
        };
        let validate = compile("validate.rhai", "validate");
        let levy = compile("levy.rhai", "levy");
        let guards = files.get("flow.rhai").and_then(|text| {
            host.compile(&format!("{id}/flow.rhai"), text)
                .map_err(|d| diags.push(d))
                .ok()
        });
        for path in files.keys().filter(|p| p.ends_with(".rhai")) {
            if !matches!(*path, "validate.rhai" | "levy.rhai" | "flow.rhai") {
                diags.push(Diagnostic::file(
                    format!("{id}/{path}"),
                    "unknown script (a permit has validate.rhai, levy.rhai and flow.rhai; shared code goes in lib/)",
                ));
            }
        }

        let mut sink = flow::Sink::new(&toml_path, source, &located);
        let numbering = flow::numbering(id, file.numbering, &mut sink);
        // A format that does not parse is already reported; it is not also missing.
        let formats_ok = sink.is_empty();
        let steps = flow::flow(file.flow, roles, &mut sink);
        flow::check_guards(id, &steps, guards.as_ref(), &mut sink);
        if formats_ok {
            flow::check_effects(&steps, &numbering, &mut sink);
        }
        diags.extend(sink.finish());

        let fixture_count = fixtures::listed(id, files)
            .filter_map(|(full, _)| full.map_err(|d| diags.push(d)).ok())
            .count();

        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(Self {
            id: id.to_owned(),
            name: file.name,
            description: file.description,
            fields,
            requirements: file.requirements,
            documents_field: file.documents_field,
            script_params: SharedMap::from_params(&params),
            params,
            validate,
            levy,
            fixture_count,
            flow: steps,
            numbering,
            guards,
        })
    }

    /// The steps applications of this type go through; empty when it declares none.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Its registration and permit number formats.
    pub fn numbering(&self) -> &Numbering {
        &self.numbering
    }

    /// `flow.rhai`, compiled with the release's scripts.
    pub fn guards(&self) -> Option<&Script> {
        self.guards.as_ref()
    }

    /// Runtime field checks, the document checklist, then `validate.rhai`. The runtime's own
    /// messages are in `language`; the script's are as its author wrote them.
    pub fn check(
        &self,
        host: &ScriptHost,
        context: &CallContext,
        data: &Json,
        params: &SharedMap,
        language: Language,
    ) -> Result<Checked, ScriptError> {
        let Some(object) = data.as_object() else {
            return Ok(Checked {
                data: Record::new(),
                errors: vec![FieldError::new("data", Problem::NotObject.text(language))],
            });
        };
        let (typed, mut errors) = check_record(&self.fields, object, "", language);
        if let Some(doc_field) = &self.documents_field {
            self.check_documents(
                typed.get(doc_field.as_str()),
                doc_field,
                language,
                &mut errors,
            );
        }
        if !errors.is_empty() {
            return Ok(Checked {
                data: typed,
                errors,
            });
        }
        if let Some(script) = &self.validate {
            let out = host.call(
                context,
                script,
                "validate",
                // The data stays a plain map: it is small, and scripts read many of its fields,
                // which Rhai does fastest on its own maps.
                (
                    Dynamic::from_map(record_to_map(&typed)),
                    Dynamic::from(params.clone()),
                ),
            )?;
            errors = script_errors(out, script.file())?;
        }
        Ok(Checked {
            data: typed,
            errors,
        })
    }

    /// The document checklist: every required requirement present, no unknown or repeated
    /// code. Items are codes, or records whose `kode` (or `code`) is the code.
    fn check_documents(
        &self,
        supplied: Option<&Value>,
        field: &str,
        language: Language,
        errors: &mut Vec<FieldError>,
    ) {
        let items = match supplied {
            Some(Value::List(items)) => items.as_slice(),
            _ => &[],
        };
        let text = |v: &Value| match v {
            Value::Text(s) | Value::Date(s) => Some(s.clone()),
            _ => None,
        };
        let mut seen: Vec<String> = Vec::new();
        for item in items {
            let code = match item {
                Value::Map(record) => record
                    .get("kode")
                    .or_else(|| record.get("code"))
                    .and_then(text),
                other => text(other),
            };
            let Some(code) = code else { continue };
            if !self.requirements.iter().any(|r| r.code == code) {
                errors.push(FieldError::new(
                    field,
                    Problem::UnknownDocument(&code).text(language),
                ));
            } else if seen.contains(&code) {
                errors.push(FieldError::new(
                    field,
                    Problem::DocumentTwice(&code).text(language),
                ));
            }
            seen.push(code);
        }
        for req in self.requirements.iter().filter(|r| r.required) {
            if !seen.contains(&req.code) {
                errors.push(FieldError::new(
                    field,
                    Problem::MissingDocument(&req.code, &req.name).text(language),
                ));
            }
        }
    }

    /// Runs `levy.rhai` on checked data. `None` when the permit has no levy.
    pub fn assess(
        &self,
        host: &ScriptHost,
        context: &CallContext,
        data: Record,
        params: &SharedMap,
    ) -> Result<Option<Assessment>, ScriptError> {
        let Some(script) = &self.levy else {
            return Ok(None);
        };
        let out = host.call(
            context,
            script,
            "levy",
            (
                Dynamic::from_map(record_to_map(&data)),
                Dynamic::from(params.clone()),
            ),
        )?;
        levy::from_script(out, script.file()).map(Some)
    }

    /// The permit's form and requirements as the API shows them.
    pub fn describe(&self) -> Json {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "has_levy": self.levy.is_some(),
            "fields": self.fields.iter().map(|f| &f.def).collect::<Vec<_>>(),
            "requirements": self.requirements,
            "documents_field": self.documents_field,
            "flow": self.flow,
            "numbering": self.numbering,
        })
    }
}

/// A problem at `span` of `source` (from the TOML parser), or with the file as a whole (1:1)
/// when the parser gives no span.
fn at_span(
    file: &str,
    source: &str,
    span: Option<std::ops::Range<usize>>,
    message: impl Into<String>,
) -> Diagnostic {
    match span {
        Some(span) => Diagnostic::at_offset(file, source, span.start, message),
        None => Diagnostic::file(file, message),
    }
}

/// Where the first value that cannot become a script value (a float that is not an exact
/// decimal) is written: `editable` is converted key by key (it keeps every literal's text) and
/// the failing key looked up in `located`, the same document with the parser's spans.
fn unconvertible_span(
    editable: &toml_edit::Item,
    located: &toml_edit::Item,
) -> Option<std::ops::Range<usize>> {
    let (Some(editable_table), Some(located_table)) =
        (editable.as_table_like(), located.as_table_like())
    else {
        return located.span();
    };
    let (key, item) = editable_table
        .iter()
        .find(|(_, item)| crate::domain::value::from_toml(item).is_err())?;
    located_table
        .get(key)
        .and_then(|at| unconvertible_span(item, at))
        .or_else(|| located_table.key(key).and_then(toml_edit::Key::span))
}

/// A field declaration: a table of `[[fields]]` or an inline table of `fields = [...]`.
enum FieldDecl<'a> {
    Table(&'a toml_edit::Table),
    Inline(&'a toml_edit::InlineTable),
}

impl<'a> FieldDecl<'a> {
    /// Declaration `index` of the `fields` array under `item`.
    fn nth(item: &'a toml_edit::Item, index: usize) -> Option<Self> {
        match item {
            toml_edit::Item::ArrayOfTables(tables) => tables.get(index).map(FieldDecl::Table),
            toml_edit::Item::Value(toml_edit::Value::Array(array)) => array
                .get(index)
                .and_then(toml_edit::Value::as_inline_table)
                .map(FieldDecl::Inline),
            _ => None,
        }
    }

    fn fields(&self) -> Option<&'a toml_edit::Item> {
        match self {
            FieldDecl::Table(t) => t.get("fields"),
            FieldDecl::Inline(t) => t.get_key_value("fields").map(|(_, item)| item),
        }
    }

    /// Where `key` is written in this declaration, else where the declaration starts.
    fn span_of(&self, key: &str) -> Option<std::ops::Range<usize>> {
        match self {
            FieldDecl::Table(t) => t
                .key(key)
                .and_then(toml_edit::Key::span)
                .or_else(|| t.span()),
            FieldDecl::Inline(t) => t
                .key(key)
                .and_then(toml_edit::Key::span)
                .or_else(|| t.span()),
        }
    }
}

/// Where the declaration of the field at `at` (see [`fields::DeclError::at`]) writes `key`, from
/// the parser's spans: the text of a name can appear anywhere earlier in the file (a
/// description, a requirement, another record), its declaration only once.
fn field_span(
    doc: &toml_edit::Document<&str>,
    at: &[usize],
    key: &str,
) -> Option<std::ops::Range<usize>> {
    let (first, rest) = at.split_first()?;
    let mut decl = FieldDecl::nth(doc.get("fields")?, *first)?;
    for index in rest {
        match decl.fields().and_then(|item| FieldDecl::nth(item, *index)) {
            Some(inner) => decl = inner,
            None => break,
        }
    }
    decl.span_of(key)
}

fn script_errors(out: Dynamic, file: &str) -> Result<Vec<FieldError>, ScriptError> {
    let bad = || ScriptError {
        kind: ScriptErrorKind::Runtime,
        location: Diagnostic::file(file, ""),
        message: "validate must return an array of `#{ field: \"...\", message: \"...\" }`".into(),
    };
    let items = out.try_cast::<rhai::Array>().ok_or_else(bad)?;
    items
        .into_iter()
        .map(|item| {
            let map = into_map(item).ok_or_else(bad)?;
            let text = |k: &str| {
                map.get(k)
                    .filter(|v| v.is_string())
                    .map(|v| v.to_string())
                    .ok_or_else(bad)
            };
            Ok(FieldError::new(text("field")?, text("message")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;

    /// The diagnostics of loading `permit.toml` = `toml` as permit `uji`.
    fn problems(toml: &str) -> Vec<String> {
        let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let files = PermitFiles::from([("permit.toml", toml)]);
        match Permit::load("uji", &files, &host, &Roles::default()) {
            Ok(_) => Vec::new(),
            Err(diags) => diags.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_field_problem_is_at_its_own_declaration_when_its_name_appears_earlier() {
        let toml = r#"name = "Uji"
description = 'isi `name = "luas"` dengan luas bangunan'
[[requirements]]
code = "luas"
name = "luas"
[[fields]]
name = "nama"
type = "text"
[[fields]]
name = "luas"
type = "decimal"
pattern = "(["
"#;
        let found = problems(toml);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("uji/permit.toml:12:1: field `luas`: invalid pattern"),
            "{found:?}"
        );
    }

    #[test]
    fn a_problem_in_a_record_is_at_the_record_field() {
        let toml = r#"name = "Uji"
[[fields]]
name = "pemilik"
type = "list"
[[fields.fields]]
name = "nik"
type = "text"
[[fields.fields]]
name = "peran"
type = "enum"
"#;
        assert_eq!(
            problems(toml),
            ["uji/permit.toml:10:1: field `pemilik.peran`: an enum needs `values`"]
        );
        let inline = "name = \"Uji\"\nfields = [\n  { name = \"a\", type = \"text\" },\n  \
                      { name = \"b\", type = \"list\", items = \"list\" },\n]\n";
        assert_eq!(
            problems(inline),
            ["uji/permit.toml:4:32: field `b`: lists of lists are not supported"]
        );
    }

    #[test]
    fn a_field_declared_twice_is_at_its_second_declaration() {
        let toml = "name = \"Uji\"\n[[fields]]\nname = \"a\"\ntype = \"text\"\n\
                    [[fields]]\nname = \"a\"\ntype = \"date\"\n";
        assert_eq!(
            problems(toml),
            ["uji/permit.toml:6:1: field `a` is declared twice"]
        );
    }

    #[test]
    fn documents_field_is_located_at_its_key_not_at_earlier_text() {
        let toml = r#"name = "Uji"
description = "the documents_field names the checklist"
documents_field = "dokumen"
[[fields]]
name = "dokumen"
type = "text"
"#;
        let found = problems(toml);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("uji/permit.toml:3:1: documents_field `dokumen`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_param_that_is_not_an_exact_decimal_is_at_its_value() {
        let toml = "name = \"Uji\"\n[params]\nrate = 0.1\n[params.batas]\nbawah = 1\natas = inf\n";
        assert_eq!(
            problems(toml),
            ["uji/permit.toml:6:8: [params]: `inf` is not an exact decimal"]
        );
        let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let files = PermitFiles::from([
            ("permit.toml", "name = \"Uji\"\n"),
            (
                "tables/tarif.toml",
                "# tarif per zona\nzona_1 = 1.5\nzona_2 = nan\n",
            ),
        ]);
        let err = Permit::load("uji", &files, &host, &Roles::default())
            .err()
            .unwrap();
        assert_eq!(
            err[0].to_string(),
            "uji/tables/tarif.toml:3:10: `nan` is not an exact decimal"
        );
    }

    /// The diagnostics of permit `uji` = `toml` with `flow.rhai` = `guards`.
    fn flow_problems(toml: &str, guards: Option<&str>) -> Vec<String> {
        let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let mut files = PermitFiles::from([("permit.toml", toml)]);
        if let Some(g) = guards {
            files.insert("flow.rhai", g);
        }
        match Permit::load("uji", &files, &host, &Roles::default()) {
            Ok(_) => Vec::new(),
            Err(diags) => diags.iter().map(ToString::to_string).collect(),
        }
    }

    const GUARDS: &str = "fn lengkap(app, params) {\n  if app.applicant.nik == \"\" { \"NIK kosong\" } else { () }\n}\n";

    #[test]
    fn a_flow_and_numbering_are_read_from_permit_toml() {
        let toml = r#"name = "Uji"
[numbering]
registration = "REG/UJI/{YYYY}/{NNNNN}"
permit = "503/{NNNN}/UJI/{MM}/{YYYY}"
type_number = 12
[numbering.perpanjangan]
permit = "503/{NNNN}/UJI-P/{JJJ}/{YYYY}"
[[flow]]
step = "pendaftaran"
label = "Pendaftaran"
role = "front_office"
sla_days = 1
guard = "lengkap"
[[flow]]
step = "penetapan"
label = "Penetapan"
role = "kepala_dinas"
effects = ["issue_permit"]
returns_to = ["pendaftaran"]
"#;
        let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let files = PermitFiles::from([("permit.toml", toml), ("flow.rhai", GUARDS)]);
        let permit = Permit::load("uji", &files, &host, &Roles::default())
            .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())
            .unwrap();
        let flow = permit.flow();
        assert_eq!(flow.steps().len(), 2);
        assert_eq!(flow.first().map(|s| s.sla_days), Some(Some(1)));
        assert_eq!(
            flow.next_after("pendaftaran").map(|s| s.role.as_str()),
            Some("kepala_dinas")
        );
        assert!(flow.may_return("penetapan", "pendaftaran"));
        let numbering = permit.numbering();
        let on = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let render = |f: Option<&crate::domain::numbering::Format>| {
            f.unwrap().render(7, on, numbering.code())
        };
        assert_eq!(
            render(numbering.registration("perubahan")),
            "REG/UJI/2026/00007"
        );
        assert_eq!(render(numbering.permit("baru")), "503/0007/UJI/XI/2026");
        assert_eq!(
            render(numbering.permit("perpanjangan")),
            "503/0007/UJI-P/012/2026"
        );
        let shown = permit.describe();
        assert_eq!(
            shown["flow"][1]["effects"],
            serde_json::json!(["issue_permit"])
        );
        assert_eq!(shown["flow"][0]["guard"], "lengkap");
        assert_eq!(shown["numbering"]["permit"], "503/{NNNN}/UJI/{MM}/{YYYY}");

        // Without [[flow]] or [numbering]: an empty flow and the default registration format.
        let plain = Permit::load(
            "uji",
            &PermitFiles::from([("permit.toml", "name = \"Uji\"\n")]),
            &host,
            &Roles::default(),
        )
        .map_err(|_| ())
        .unwrap();
        assert!(plain.flow().is_empty());
        assert_eq!(
            plain.numbering().registration("baru").map(|f| f.as_str()),
            Some(crate::domain::numbering::DEFAULT_REGISTRATION)
        );
        assert_eq!(plain.numbering().permit("baru"), None);
    }

    #[test]
    fn an_inconsistent_flow_is_located_at_the_key_at_fault() {
        let toml = r#"name = "Uji"
[[flow]]
step = "pendaftaran"
label = "Pendaftaran"
role = "loket"
[[flow]]
step = "pendaftaran"
label = "Lagi"
role = "front_office"
sla_days = 0
[[flow]]
step = "Entri-Data"
label = "Entri"
role = "back_office"
effects = ["assess_levy"]
returns_to = ["penetapan"]
[[flow]]
step = "penetapan"
label = "Penetapan"
role = "kepala_dinas"
effects = ["issue_permit"]
"#;
        assert_eq!(
            flow_problems(toml, None),
            [
                "uji/permit.toml:5:1: step `pendaftaran`: unknown role `loket` (the office's roles: admin, front_office, back_office, kabid_pelayanan, tim_teknis, kepala_dinas, bendahara)",
                "uji/permit.toml:7:1: step `pendaftaran` is declared twice",
                "uji/permit.toml:10:1: step `pendaftaran`: `sla_days` must be a positive whole number of working days, not `0`",
                "uji/permit.toml:12:1: step key `Entri-Data` must be lowercase letters, digits and `_`",
                "uji/permit.toml:15:1: step `Entri-Data`: unknown effect `assess_levy` (known: issue_permit)",
                "uji/permit.toml:16:1: step `Entri-Data`: `returns_to` names `penetapan`, which is not a step before it",
                "uji/permit.toml:21:1: step `penetapan`: effect `issue_permit` needs a permit number format (`permit` in [numbering]); none for baru, perubahan, perpanjangan",
            ]
        );
        // A negative number of days and an unknown key are refused too.
        let found = flow_problems(
            "name = \"Uji\"\n[[flow]]\nstep = \"a\"\nlabel = \"A\"\nrole = \"admin\"\nsla_days = -2\n",
            None,
        );
        assert_eq!(
            found,
            ["uji/permit.toml:6:1: step `a`: `sla_days` must be a positive whole number of working days, not `-2`"]
        );
        let found = flow_problems(
            "name = \"Uji\"\n[[flow]]\nstep = \"a\"\nlabel = \"A\"\nrole = \"admin\"\nsla = 2\n",
            None,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("uji/permit.toml:6:1: unknown field `sla`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_guard_must_be_a_function_of_flow_rhai() {
        let toml = "name = \"Uji\"\n[[flow]]\nstep = \"a\"\nlabel = \"A\"\nrole = \"front_office\"\nguard = \"lengkap\"\n";
        assert_eq!(
            flow_problems(toml, None),
            ["uji/permit.toml:6:1: step `a`: guard `lengkap` needs `uji/flow.rhai` with `fn lengkap(app, params)`"]
        );
        assert_eq!(
            flow_problems(toml, Some("fn lengkap(app) { () }\n")),
            ["uji/permit.toml:6:1: step `a`: guard `lengkap` is not defined: uji/flow.rhai has no `fn lengkap(app, params)`"]
        );
        assert_eq!(flow_problems(toml, Some(GUARDS)), Vec::<String>::new());
        let broken = flow_problems(toml, Some("fn lengkap(app, params) {\n  let = 1;\n}\n"));
        assert!(broken[0].starts_with("uji/flow.rhai:2:"), "{broken:?}");
    }

    #[test]
    fn a_bad_number_format_is_located_at_its_value() {
        let toml = r#"name = "Uji"
[numbering]
registration = "REG/{YYYY}"
permit = "503/{NNNN}/{XX}"
[numbering.perubahan]
registration = "REG/{NNNN"
permit = "503/{NNNN}/{JJ}"
"#;
        assert_eq!(
            flow_problems(toml, None),
            [
                "uji/permit.toml:3:16: [numbering] registration: `REG/{YYYY}`: no sequence token `{N…N}`: every number needs one",
                "uji/permit.toml:4:10: [numbering] permit: `503/{NNNN}/{XX}`: unknown token `{XX}` (known: {N…N}, {MM}, {mm}, {YYYY}, {YY}, {DD}, {J…J}, {KDPER})",
                "uji/permit.toml:6:16: [numbering.perubahan] registration: `REG/{NNNN`: unbalanced `{` at character 5",
                "uji/permit.toml:7:10: [numbering.perubahan] permit: `{J…J}` prints the permit type's number; set `type_number` in [numbering]",
            ]
        );
        let unknown_kind = flow_problems(
            "name = \"Uji\"\n[numbering.sementara]\npermit = \"{NN}\"\n",
            None,
        );
        assert_eq!(unknown_kind.len(), 1, "{unknown_kind:?}");
        assert!(
            unknown_kind[0].contains("unknown field `sementara`"),
            "{unknown_kind:?}"
        );
    }

    #[test]
    fn roles_are_the_offices() {
        let toml = "name = \"Uji\"\n[[flow]]\nstep = \"a\"\nlabel = \"A\"\nrole = \"bendahara\"\n";
        let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let files = PermitFiles::from([("permit.toml", toml)]);
        let office = Roles::new(["front_office".to_owned(), "bendahara".to_owned()]).unwrap();
        assert!(Permit::load("uji", &files, &host, &office).is_ok());
        let other = Roles::new(["front_office".to_owned()]).unwrap();
        let err = Permit::load("uji", &files, &host, &other).err().unwrap();
        assert_eq!(
            err[0].to_string(),
            "uji/permit.toml:5:1: step `a`: unknown role `bendahara` (the office's roles: admin, front_office)"
        );
    }

    #[test]
    fn guards_allow_with_unit_refuse_with_text_and_fail_otherwise() {
        use crate::permits::pipeline::guard;
        let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let script = "fn lengkap(app, params) {\n  if app.applicant.nik == \"\" { \"NIK kosong\" } else { () }\n}\n\
                      fn luas(app, params) {\n  if app.data.luas > decimal(params.batas) { \"terlalu luas\" } else { () }\n}\n\
                      fn salah(app, params) {\n  42\n}\n";
        let toml = "name = \"Uji\"\n[params]\nbatas = \"100.5\"\n";
        let files = PermitFiles::from([("permit.toml", toml), ("flow.rhai", script)]);
        let permit = Permit::load("uji", &files, &host, &Roles::default())
            .map_err(|_| ())
            .unwrap();
        let context = CallContext::default();
        let app = |nik: &str| serde_json::json!({"applicant": {"nik": nik}, "data": {}});
        assert_eq!(
            guard(&permit, &host, "lengkap", &app("1871"), &context).unwrap(),
            None
        );
        assert_eq!(
            guard(&permit, &host, "lengkap", &app(""), &context).unwrap(),
            Some("NIK kosong".to_owned())
        );
        // Numbers reach the guard exactly: 100.50000000000000001 is more than 100.5.
        let data: serde_json::Value =
            serde_json::from_str(r#"{"data": {"luas": 100.50000000000000001}}"#).unwrap();
        assert_eq!(
            guard(&permit, &host, "luas", &data, &context).unwrap(),
            Some("terlalu luas".to_owned())
        );
        let data: serde_json::Value = serde_json::from_str(r#"{"data": {"luas": 100.5}}"#).unwrap();
        assert_eq!(
            guard(&permit, &host, "luas", &data, &context).unwrap(),
            None
        );
        let e = guard(&permit, &host, "salah", &app(""), &context).unwrap_err();
        assert_eq!(
            (e.location.file.as_str(), e.location.line),
            ("uji/flow.rhai", 7),
            "{e}"
        );
        assert!(e.message.contains("guard `salah` must return ()"), "{e}");
        let e = guard(&permit, &host, "tidak_ada", &app(""), &context).unwrap_err();
        assert!(e.message.contains("guard `tidak_ada`"), "{e}");
        // A script failure inside a guard is located in flow.rhai.
        let e = guard(
            &permit,
            &host,
            "luas",
            &serde_json::json!({"data": {"luas": "x"}}),
            &context,
        )
        .unwrap_err();
        assert_eq!(e.location.file, "uji/flow.rhai", "{e}");
    }

    #[test]
    fn whole_file_problems_are_at_1_1() {
        let host = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let err = Permit::load("uji", &PermitFiles::new(), &host, &Roles::default())
            .err()
            .unwrap();
        assert_eq!(
            err[0].to_string(),
            "uji/permit.toml:1:1: permit folder has no permit.toml"
        );
        // A missing required key has no span of its own: the file as a whole.
        assert_eq!(
            problems("description = \"x\"\n"),
            ["uji/permit.toml:1:1: missing field `name`"]
        );
    }
}
