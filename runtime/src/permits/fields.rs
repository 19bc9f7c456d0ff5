//! The form's data dictionary: field types and constraints declared in `permit.toml`, checked by
//! the runtime before any script runs, and the exact conversion of request JSON to script values.

use regex::Regex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::messages::{Number, Problem};
use crate::config::Language;
use crate::domain::{decimal_string, parse_date, parse_decimal, Record, Value};

/// One error in the shape every check (runtime or script) reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Text,
    Integer,
    Decimal,
    Date,
    Boolean,
    Enum,
    List,
}

/// A decimal bound written in TOML as a string (`"0.5"`) or an integer; never a float, so the
/// bound is exactly what the author wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound(pub Decimal);

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        use serde::de::Error;
        match Raw::deserialize(d).map_err(|_| {
            D::Error::custom("write decimal bounds as strings (e.g. \"0.5\") or integers")
        })? {
            Raw::Int(i) => Ok(Self(Decimal::from(i))),
            Raw::Text(s) => parse_decimal(s.trim())
                .map(Self)
                .ok_or_else(|| D::Error::custom(format!("`{s}` is not a decimal"))),
        }
    }
}

impl Serialize for Bound {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&decimal_string(self.0))
    }
}

/// A field as declared in `permit.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub min: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub max: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub greater_than: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub less_than: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_items: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
    /// The record of a `list` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub fields: Vec<FieldDef>,
    /// For a list of plain values instead of records: the type of each item. The field's own
    /// constraints (`values`, `pattern`, bounds) then apply to every item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<FieldType>,
}

/// A field ready to check values: its declaration plus the compiled pattern.
#[derive(Debug, Clone)]
pub struct Field {
    pub def: FieldDef,
    pattern: Option<Regex>,
    record: Vec<Field>,
    /// How each item of a list of plain values is checked.
    item: Option<Box<Field>>,
}

/// What is wrong with a field's declaration in `permit.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclProblem {
    #[error("names use letters, digits and `_` only")]
    Name,
    #[error("an enum needs `values`")]
    EnumWithoutValues,
    #[error("a list needs either its record's `fields` or the `items` type")]
    ListShape,
    #[error("only a list has `fields` or `items`")]
    NotAList,
    #[error("lists of lists are not supported")]
    ListOfLists,
    #[error("invalid pattern: {0}")]
    Pattern(String),
    #[error("is declared twice")]
    DeclaredTwice,
}

impl DeclProblem {
    /// The key of the declaration the problem is about, where the author has to look.
    pub fn key(&self) -> &'static str {
        match self {
            DeclProblem::Name | DeclProblem::DeclaredTwice => "name",
            DeclProblem::EnumWithoutValues | DeclProblem::ListShape | DeclProblem::NotAList => {
                "type"
            }
            DeclProblem::ListOfLists => "items",
            DeclProblem::Pattern(_) => "pattern",
        }
    }
}

/// A field declaration that cannot be used, naming the field by its path (`list.column`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclError {
    /// The dotted path of the field at fault.
    pub field: String,
    /// Where that field is declared: its index among the top-level `[[fields]]`, then among the
    /// `fields` of each record on the way down.
    pub at: Vec<usize>,
    pub problem: DeclProblem,
}

impl std::fmt::Display for DeclError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            DeclProblem::DeclaredTwice => write!(f, "field `{}` is declared twice", self.field),
            problem => write!(f, "field `{}`: {problem}", self.field),
        }
    }
}

impl std::error::Error for DeclError {}

impl Field {
    /// Checks the declaration itself; errors name the field path. `at` is where `def` is
    /// declared (see [`DeclError::at`]).
    pub fn compile(def: FieldDef, path: &str, at: &[usize]) -> Result<Self, DeclError> {
        let here = if path.is_empty() {
            def.name.clone()
        } else {
            format!("{path}.{}", def.name)
        };
        let fail = |problem| DeclError {
            field: here.clone(),
            at: at.to_vec(),
            problem,
        };
        if def.name.is_empty()
            || !def
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(fail(DeclProblem::Name));
        }
        let item_kind = def.items.unwrap_or(def.kind);
        if item_kind == FieldType::Enum && def.values.is_empty() {
            return Err(fail(DeclProblem::EnumWithoutValues));
        }
        if def.kind == FieldType::List && def.fields.is_empty() == def.items.is_none() {
            return Err(fail(DeclProblem::ListShape));
        }
        if def.kind != FieldType::List && (!def.fields.is_empty() || def.items.is_some()) {
            return Err(fail(DeclProblem::NotAList));
        }
        if def.items == Some(FieldType::List) {
            return Err(fail(DeclProblem::ListOfLists));
        }
        let pattern = def
            .pattern
            .as_deref()
            .map(|p| Regex::new(&format!("^(?:{p})$")))
            .transpose()
            .map_err(|e| fail(DeclProblem::Pattern(e.to_string())))?;
        let record = def
            .fields
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, f)| {
                let mut inner = at.to_vec();
                inner.push(i);
                Field::compile(f, &here, &inner)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in record.iter().enumerate() {
            if !seen.insert(f.def.name.clone()) {
                let mut inner = at.to_vec();
                inner.push(i);
                return Err(DeclError {
                    field: format!("{here}.{}", f.def.name),
                    at: inner,
                    problem: DeclProblem::DeclaredTwice,
                });
            }
        }
        let item = def.items.map(|kind| {
            Box::new(Field {
                def: FieldDef {
                    kind,
                    required: true,
                    items: None,
                    min_items: None,
                    max_items: None,
                    ..def.clone()
                },
                pattern: pattern.clone(),
                record: Vec::new(),
                item: None,
            })
        });
        Ok(Self {
            def,
            pattern,
            record,
            item,
        })
    }
}

/// Checks `data` against the declared fields and converts it to the script's typed map.
/// Every problem is reported, not just the first, in `language`.
pub fn check_record(
    fields: &[Field],
    data: &serde_json::Map<String, Json>,
    path: &str,
    language: Language,
) -> (Record, Vec<FieldError>) {
    let mut out = Record::new();
    let mut errors = Vec::new();
    let name_of = |n: &str| {
        if path.is_empty() {
            n.to_owned()
        } else {
            format!("{path}.{n}")
        }
    };
    for key in data.keys() {
        if !fields.iter().any(|f| &f.def.name == key) {
            errors.push(FieldError::new(
                name_of(key),
                Problem::UnknownField.text(language),
            ));
        }
    }
    for field in fields {
        let name = name_of(&field.def.name);
        match data.get(&field.def.name) {
            None | Some(Json::Null) => {
                if field.def.required {
                    errors.push(FieldError::new(name, Problem::Required.text(language)));
                }
            }
            Some(value) => match check_value(field, value, &name, language, &mut errors) {
                Some(v) => {
                    out.insert(field.def.name.clone(), v);
                }
                None => continue,
            },
        }
    }
    (out, errors)
}

fn check_value(
    field: &Field,
    value: &Json,
    name: &str,
    language: Language,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let def = &field.def;
    let mut fail = |p: Problem<'_>| {
        errors.push(FieldError::new(name, p.text(language)));
        None
    };
    match def.kind {
        FieldType::Text => {
            let Json::String(s) = value else {
                return fail(Problem::NotText);
            };
            let len = s.chars().count();
            if let Some(min) = def.min_length.filter(|m| len < *m) {
                return fail(Problem::TooShort(min));
            }
            if let Some(max) = def.max_length.filter(|m| len > *m) {
                return fail(Problem::TooLong(max));
            }
            if let Some(p) = &field.pattern {
                if !p.is_match(s) {
                    return fail(Problem::NoMatch(def.pattern.as_deref().unwrap_or_default()));
                }
            }
            Some(Value::Text(s.clone()))
        }
        FieldType::Enum => {
            let values = def.values.join(", ");
            let Json::String(s) = value else {
                return fail(Problem::NotEnumValue(&values));
            };
            if !def.values.contains(s) {
                return fail(Problem::NotOneOf(s, &values));
            }
            Some(Value::Text(s.clone()))
        }
        FieldType::Boolean => match value {
            Json::Bool(b) => Some(Value::Bool(*b)),
            _ => fail(Problem::NotBoolean),
        },
        FieldType::Date => {
            let Json::String(s) = value else {
                return fail(Problem::NotDateValue);
            };
            if parse_date(s).is_none() {
                return fail(Problem::NotDate(s));
            }
            Some(Value::Date(s.clone()))
        }
        FieldType::Integer | FieldType::Decimal => {
            let text = match value {
                Json::Number(n) => n.to_string(),
                Json::String(s) => s.trim().to_owned(),
                _ => return fail(Problem::NotNumber(number_kind(def.kind))),
            };
            let Some(d) = parse_decimal(&text) else {
                return fail(Problem::NotNumberText(&text, number_kind(def.kind)));
            };
            if def.kind == FieldType::Integer && !d.fract().is_zero() {
                return fail(Problem::NotWhole(&text));
            }
            if let Some(m) = def.min.filter(|m| d < m.0) {
                return fail(Problem::AtLeast(&decimal_string(m.0)));
            }
            if let Some(m) = def.max.filter(|m| d > m.0) {
                return fail(Problem::AtMost(&decimal_string(m.0)));
            }
            if let Some(m) = def.greater_than.filter(|m| d <= m.0) {
                return fail(Problem::GreaterThan(&decimal_string(m.0)));
            }
            if let Some(m) = def.less_than.filter(|m| d >= m.0) {
                return fail(Problem::LessThan(&decimal_string(m.0)));
            }
            if def.kind == FieldType::Integer {
                match rust_decimal::prelude::ToPrimitive::to_i64(&d) {
                    Some(i) => Some(Value::Int(i)),
                    None => fail(Problem::TooLarge(&text)),
                }
            } else {
                Some(Value::Decimal(d))
            }
        }
        FieldType::List => {
            let Json::Array(items) = value else {
                return fail(Problem::NotList);
            };
            if let Some(min) = def.min_items.filter(|m| items.len() < *m) {
                return fail(Problem::TooFewItems(min));
            }
            if let Some(max) = def.max_items.filter(|m| items.len() > *m) {
                return fail(Problem::TooManyItems(max));
            }
            let mut out = Vec::with_capacity(items.len());
            let before = errors.len();
            for (i, item) in items.iter().enumerate() {
                let item_name = format!("{name}[{i}]");
                if let Some(item_field) = &field.item {
                    if item.is_null() {
                        errors.push(FieldError::new(item_name, Problem::NullItem.text(language)));
                    } else if let Some(v) =
                        check_value(item_field, item, &item_name, language, errors)
                    {
                        out.push(v);
                    }
                    continue;
                }
                let Json::Object(record) = item else {
                    errors.push(FieldError::new(
                        item_name,
                        Problem::NotObject.text(language),
                    ));
                    continue;
                };
                let (map, mut errs) = check_record(&field.record, record, &item_name, language);
                errors.append(&mut errs);
                out.push(Value::Map(map));
            }
            (errors.len() == before).then_some(Value::List(out))
        }
    }
}

fn number_kind(kind: FieldType) -> Number {
    if kind == FieldType::Integer {
        Number::Whole
    } else {
        Number::Decimal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(toml_src: &str) -> Vec<Field> {
        #[derive(Deserialize)]
        struct F {
            fields: Vec<FieldDef>,
        }
        let f: F = toml::from_str(toml_src).unwrap();
        f.fields
            .into_iter()
            .enumerate()
            .map(|(i, d)| Field::compile(d, "", &[i]).unwrap())
            .collect()
    }

    fn check(fields: &[Field], json: &str) -> (Record, Vec<FieldError>) {
        let v: Json = serde_json::from_str(json).unwrap();
        check_record(fields, v.as_object().unwrap(), "", Language::Id)
    }

    const FORM: &str = r#"
[[fields]]
name = "luas"
type = "decimal"
required = true
greater_than = "0"
[[fields]]
name = "lantai"
type = "integer"
required = true
min = 1
max = 20
[[fields]]
name = "fungsi"
type = "enum"
values = ["usaha", "hunian"]
[[fields]]
name = "nik"
type = "text"
pattern = "[0-9]{16}"
[[fields]]
name = "items"
type = "list"
max_items = 2
  [[fields.fields]]
  name = "volume"
  type = "decimal"
  required = true
"#;

    #[test]
    fn valid_data_converts_exactly() {
        let f = fields(FORM);
        let (map, errs) = check(
            &f,
            r#"{"luas": 1250.5, "lantai": "5", "items": [{"volume": "0.1"}]}"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert!(matches!(&map["luas"], Value::Decimal(d) if d.to_string() == "1250.5"));
        assert_eq!(map["lantai"], Value::Int(5));
    }

    #[test]
    fn every_problem_names_its_field() {
        let f = fields(FORM);
        let (_, errs) = check(
            &f,
            r#"{"luas": 0, "lantai": 2.5, "fungsi": "pabrik", "nik": "12", "x": 1, "items": [{}, {"volume": 1}, {"volume": 2}]}"#,
        );
        let named: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            named,
            ["x", "luas", "lantai", "fungsi", "nik", "items"],
            "{errs:?}"
        );
        let (_, errs) = check(&f, r#"{"luas": 1, "lantai": 1, "items": [{}]}"#);
        assert_eq!(errs, [FieldError::new("items[0].volume", "wajib diisi")]);
    }

    #[test]
    fn lists_of_plain_values_check_every_item() {
        let f = fields(
            "[[fields]]\nname = \"dokumen\"\ntype = \"list\"\nitems = \"enum\"\nvalues = [\"ktp\", \"str\"]\nmin_items = 1\n",
        );
        let (map, errs) = check(&f, r#"{"dokumen": ["ktp", "str"]}"#);
        assert!(errs.is_empty(), "{errs:?}");
        assert!(matches!(&map["dokumen"], Value::List(items) if items.len() == 2));
        let (_, errs) = check(&f, r#"{"dokumen": ["ktp", "sim", 3]}"#);
        let named: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["dokumen[1]", "dokumen[2]"]);
        let (_, errs) = check(&f, r#"{"dokumen": []}"#);
        assert_eq!(
            errs,
            [FieldError::new(
                "dokumen",
                "harus berisi paling sedikit 1 entri"
            )]
        );
    }

    #[test]
    fn missing_required_fields_are_reported() {
        let f = fields(FORM);
        let (_, errs) = check(&f, "{}");
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|e| e.message == "wajib diisi"));
    }

    #[test]
    fn messages_follow_the_language_and_field_names_do_not() {
        let f = fields(FORM);
        let v: Json = serde_json::from_str(r#"{"luas": 0, "lantai": 30, "x": 1}"#).unwrap();
        let messages = |language| {
            check_record(&f, v.as_object().unwrap(), "", language)
                .1
                .into_iter()
                .map(|e| (e.field, e.message))
                .collect::<Vec<_>>()
        };
        let pairs =
            |list: [(&str, &str); 3]| list.map(|(f, m)| (f.to_owned(), m.to_owned())).to_vec();
        assert_eq!(
            messages(Language::Id),
            pairs([
                ("x", "isian tidak dikenal"),
                ("luas", "harus lebih dari 0"),
                ("lantai", "tidak boleh lebih dari 20"),
            ])
        );
        assert_eq!(
            messages(Language::En),
            pairs([
                ("x", "unknown field"),
                ("luas", "must be greater than 0"),
                ("lantai", "must be at most 20"),
            ])
        );
    }

    #[test]
    fn float_bounds_are_refused() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct F {
            fields: Vec<FieldDef>,
        }
        let r: Result<F, _> = toml::from_str("[[fields]]\nname='a'\ntype='decimal'\nmin=0.5\n");
        let e = r.err().unwrap().to_string();
        assert!(e.contains("write decimal bounds as strings"), "{e}");
    }
}
