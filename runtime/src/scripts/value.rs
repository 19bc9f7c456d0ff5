//! Exact conversion between domain values and script values, and of script results to JSON.
//! Numbers keep their decimal text end to end (serde_json is built with `arbitrary_precision`),
//! so no value ever passes through `f64`.

use rhai::{Dynamic, Map};
use serde_json::Value as Json;

use super::shared::SharedMap;
pub use crate::domain::decimal_string;
use crate::domain::{Record, Value};

/// A domain value as scripts see it: decimals and integers as Rhai's, dates as their
/// `YYYY-MM-DD` text, records as maps.
pub fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Unit => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Int(i) => Dynamic::from_int(*i),
        Value::Decimal(d) => Dynamic::from_decimal(*d),
        Value::Text(s) | Value::Date(s) => Dynamic::from(s.clone()),
        Value::List(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Map(record) => Dynamic::from_map(record_to_map(record)),
    }
}

/// A record (checked form data) as a script map.
pub fn record_to_map(record: &Record) -> Map {
    record
        .iter()
        .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
        .collect()
}

/// Script values back to JSON. Decimals become strings (exact, trailing zeros dropped) so that
/// clients never parse money as floating point. Values are read in place: cloning a map to test
/// its type would copy it whole at every level.
pub fn dynamic_to_json(value: &Dynamic) -> Json {
    if value.is_unit() {
        return Json::Null;
    }
    if let Ok(b) = value.as_bool() {
        return Json::Bool(b);
    }
    if let Ok(i) = value.as_int() {
        return Json::from(i);
    }
    if let Ok(d) = value.as_decimal() {
        return Json::String(decimal_string(d));
    }
    if let Ok(s) = value.as_immutable_string_ref() {
        return Json::String(s.to_string());
    }
    if let Ok(items) = value.as_array_ref() {
        return Json::Array(items.iter().map(dynamic_to_json).collect());
    }
    if let Ok(map) = value.as_map_ref() {
        return map_to_json(&map);
    }
    if let Some(map) = value.read_lock::<SharedMap>() {
        return map_to_json(map.entries());
    }
    Json::String(value.to_string())
}

fn map_to_json(map: &Map) -> Json {
    Json::Object(
        map.iter()
            .map(|(k, v)| (k.to_string(), dynamic_to_json(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::value::{from_json, from_toml};
    use rust_decimal::Decimal;

    #[test]
    fn json_numbers_stay_exact() {
        let v: Json = serde_json::from_str(r#"{"a": 1250.5, "b": 0.1, "c": 7, "d": 1e2}"#).unwrap();
        let d = to_dynamic(&from_json(&v).unwrap()).cast::<Map>();
        assert_eq!(
            d["a"].clone().cast::<Decimal>(),
            Decimal::from_str_exact("1250.5").unwrap()
        );
        assert_eq!(
            d["b"].clone().cast::<Decimal>(),
            Decimal::from_str_exact("0.1").unwrap()
        );
        assert_eq!(d["c"].as_int().unwrap(), 7);
        assert_eq!(d["d"].clone().cast::<Decimal>(), Decimal::from(100));
    }

    #[test]
    fn toml_floats_keep_their_literal_text() {
        let doc: toml_edit::DocumentMut = "x = 0.15\ny = 1_000.5\n".parse().unwrap();
        let x = to_dynamic(&from_toml(&doc["x"]).unwrap()).cast::<Decimal>();
        let y = to_dynamic(&from_toml(&doc["y"]).unwrap()).cast::<Decimal>();
        assert_eq!(x.to_string(), "0.15");
        assert_eq!(y.to_string(), "1000.5");
    }

    #[test]
    fn decimals_leave_as_strings() {
        let d = Dynamic::from_decimal(Decimal::from_str_exact("1183500.000").unwrap());
        assert_eq!(dynamic_to_json(&d), Json::String("1183500".into()));
    }
}
