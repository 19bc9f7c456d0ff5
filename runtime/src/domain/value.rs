//! Values of checked forms, params and reference tables.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// One value: what a checked form field, a param or a table cell holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An absent value (JSON `null`).
    Unit,
    Bool(bool),
    /// A whole number (form `integer` fields, TOML integers, whole JSON numbers).
    Int(i64),
    /// An exact decimal, never a float.
    Decimal(Decimal),
    Text(String),
    /// A form `date` field, as the applicant wrote it (a valid `YYYY-MM-DD` date).
    Date(String),
    List(Vec<Value>),
    Map(Record),
}

/// Named values: a form's checked data, a record of a list field, a table or a row.
pub type Record = BTreeMap<String, Value>;

/// A permit's `[params]`, and its reference tables (`[tables.*]` and `tables/<name>.toml`)
/// under the reserved key `tables`, as scripts see them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(Record);

/// The key under which reference tables sit among the params.
pub const TABLES: &str = "tables";

impl Params {
    /// `params` plus `tables` (under [`TABLES`]).
    pub fn new(mut params: Record, tables: Record) -> Self {
        params.insert(TABLES.to_owned(), Value::Map(tables));
        Self(params)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Replaces the value of `key` (a fixture's override); the tables cannot be replaced.
    pub fn set(&mut self, key: &str, value: Value) -> bool {
        if key == TABLES || !self.0.contains_key(key) {
            return false;
        }
        self.0.insert(key.to_owned(), value);
        true
    }

    /// Every param, the tables included.
    pub fn entries(&self) -> &Record {
        &self.0
    }
}

/// TOML values (from `toml_edit`, which keeps the literal text of floats). A float literal such
/// as `0.15` becomes the exact decimal 0.15; a TOML datetime becomes its text.
pub fn from_toml(item: &toml_edit::Item) -> Result<Value, String> {
    match item {
        toml_edit::Item::None => Ok(Value::Unit),
        toml_edit::Item::Value(v) => from_toml_value(v),
        toml_edit::Item::Table(t) => Ok(Value::Map(
            t.iter()
                .map(|(k, v)| Ok((k.to_owned(), from_toml(v)?)))
                .collect::<Result<_, String>>()?,
        )),
        toml_edit::Item::ArrayOfTables(a) => Ok(Value::List(
            a.iter()
                .map(|t| {
                    Ok(Value::Map(
                        t.iter()
                            .map(|(k, v)| Ok((k.to_owned(), from_toml(v)?)))
                            .collect::<Result<_, String>>()?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        )),
    }
}

fn from_toml_value(v: &toml_edit::Value) -> Result<Value, String> {
    use toml_edit::Value as V;
    Ok(match v {
        V::String(s) => Value::Text(s.value().clone()),
        V::Integer(i) => Value::Int(*i.value()),
        V::Float(f) => {
            let raw = f
                .as_repr()
                .and_then(|r| r.as_raw().as_str())
                .map(|s| s.replace('_', ""))
                .ok_or_else(|| "float without source text".to_owned())?;
            Value::Decimal(
                parse_decimal(raw.trim())
                    .ok_or_else(|| format!("`{raw}` is not an exact decimal"))?,
            )
        }
        V::Boolean(b) => Value::Bool(*b.value()),
        V::Datetime(d) => Value::Text(d.value().to_string()),
        V::Array(a) => Value::List(
            a.iter()
                .map(from_toml_value)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        V::InlineTable(t) => Value::Map(
            t.iter()
                .map(|(k, v)| Ok((k.to_owned(), from_toml_value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// A JSON number: an `Int` when it is a whole number that fits, otherwise an exact decimal.
/// `None` when the text is not representable (too many digits).
pub fn from_json_number(n: &serde_json::Number) -> Option<Value> {
    let text = n.to_string();
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return Some(Value::Int(i));
        }
    }
    parse_decimal(&text).map(Value::Decimal)
}

/// Untyped conversion of JSON (fixture overrides of params): numbers stay exact.
pub fn from_json(value: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => Value::Unit,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            from_json_number(n).ok_or_else(|| format!("number out of range: `{n}`"))?
        }
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(from_json).collect::<Result<_, _>>()?),
        Json::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Parses plain (`1250.5`) and scientific (`1.2505e3`) notation exactly.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    if s.contains(['e', 'E']) {
        Decimal::from_scientific(s).ok()
    } else {
        Decimal::from_str_exact(s).ok()
    }
}

/// A `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// The canonical text of a decimal in responses: no exponent, no trailing zeros.
pub fn decimal_string(d: Decimal) -> String {
    d.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        let dec = |s| Decimal::from_str_exact(s).unwrap();
        assert_eq!(parse_decimal("1250.5"), Some(dec("1250.5")));
        assert_eq!(parse_decimal("1.2505e3"), Some(dec("1250.5")));
        assert_eq!(parse_decimal("0.1"), Some(dec("0.1")));
        assert_eq!(parse_decimal("abc"), None);
        assert_eq!(decimal_string(dec("1183500.000")), "1183500");
    }

    #[test]
    fn params_keep_their_tables_and_take_overrides_of_known_keys_only() {
        let mut params = Params::new(
            Record::from([("shst".to_owned(), Value::Int(1))]),
            Record::from([("harga".to_owned(), Value::Map(Record::new()))]),
        );
        assert!(params.set("shst", Value::Int(2)));
        assert_eq!(params.get("shst"), Some(&Value::Int(2)));
        assert!(!params.set("baru", Value::Int(1)));
        assert!(!params.set(TABLES, Value::Unit));
        assert!(matches!(params.get(TABLES), Some(Value::Map(t)) if t.contains_key("harga")));
    }
}
