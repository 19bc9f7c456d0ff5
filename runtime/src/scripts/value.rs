//! Exact conversion between JSON, TOML and script values. Numbers keep their decimal text end to
//! end (serde_json is built with `arbitrary_precision`), so no value ever passes through `f64`.

use rhai::{Dynamic, Map, INT};
use rust_decimal::Decimal;
use serde_json::Value as Json;

use super::api::parse_decimal;
use super::shared::SharedMap;

/// A JSON number as the script sees it: an `INT` when it is a whole number that fits, otherwise
/// an exact decimal. `None` when the text is not representable (too many digits).
pub fn number_to_dynamic(n: &serde_json::Number) -> Option<Dynamic> {
    let text = n.to_string();
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<INT>() {
            return Some(Dynamic::from_int(i));
        }
    }
    parse_decimal(&text).map(Dynamic::from_decimal)
}

/// Untyped conversion used for parameters and fixture overrides.
pub fn json_to_dynamic(value: &Json) -> Result<Dynamic, String> {
    Ok(match value {
        Json::Null => Dynamic::UNIT,
        Json::Bool(b) => Dynamic::from_bool(*b),
        Json::Number(n) => {
            number_to_dynamic(n).ok_or_else(|| format!("number out of range: `{n}`"))?
        }
        Json::String(s) => Dynamic::from(s.clone()),
        Json::Array(items) => Dynamic::from_array(
            items
                .iter()
                .map(json_to_dynamic)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Json::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.as_str().into(), json_to_dynamic(v)?);
            }
            Dynamic::from_map(out)
        }
    })
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

/// The canonical text of a decimal in responses: no exponent, no trailing zeros.
pub fn decimal_string(d: Decimal) -> String {
    d.normalize().to_string()
}

/// TOML values (from `toml_edit`, which keeps the literal text of floats) to script values.
/// A float literal such as `0.15` becomes the exact decimal 0.15.
pub fn toml_to_dynamic(item: &toml_edit::Item) -> Result<Dynamic, String> {
    match item {
        toml_edit::Item::None => Ok(Dynamic::UNIT),
        toml_edit::Item::Value(v) => toml_value_to_dynamic(v),
        toml_edit::Item::Table(t) => {
            let mut out = Map::new();
            for (k, v) in t.iter() {
                out.insert(k.into(), toml_to_dynamic(v)?);
            }
            Ok(Dynamic::from_map(out))
        }
        toml_edit::Item::ArrayOfTables(a) => {
            let mut out = Vec::new();
            for t in a.iter() {
                let mut map = Map::new();
                for (k, v) in t.iter() {
                    map.insert(k.into(), toml_to_dynamic(v)?);
                }
                out.push(Dynamic::from_map(map));
            }
            Ok(Dynamic::from_array(out))
        }
    }
}

fn toml_value_to_dynamic(v: &toml_edit::Value) -> Result<Dynamic, String> {
    use toml_edit::Value as V;
    Ok(match v {
        V::String(s) => Dynamic::from(s.value().clone()),
        V::Integer(i) => Dynamic::from_int(*i.value()),
        V::Float(f) => {
            let raw = f
                .as_repr()
                .and_then(|r| r.as_raw().as_str())
                .map(|s| s.replace('_', ""))
                .ok_or_else(|| "float without source text".to_owned())?;
            let d = parse_decimal(raw.trim())
                .ok_or_else(|| format!("`{raw}` is not an exact decimal"))?;
            Dynamic::from_decimal(d)
        }
        V::Boolean(b) => Dynamic::from_bool(*b.value()),
        V::Datetime(d) => Dynamic::from(d.value().to_string()),
        V::Array(a) => Dynamic::from_array(
            a.iter()
                .map(toml_value_to_dynamic)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        V::InlineTable(t) => {
            let mut out = Map::new();
            for (k, v) in t.iter() {
                out.insert(k.into(), toml_value_to_dynamic(v)?);
            }
            Dynamic::from_map(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_stay_exact() {
        let v: Json = serde_json::from_str(r#"{"a": 1250.5, "b": 0.1, "c": 7, "d": 1e2}"#).unwrap();
        let d = json_to_dynamic(&v).unwrap().cast::<Map>();
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
        let x = toml_to_dynamic(&doc["x"]).unwrap().cast::<Decimal>();
        let y = toml_to_dynamic(&doc["y"]).unwrap().cast::<Decimal>();
        assert_eq!(x.to_string(), "0.15");
        assert_eq!(y.to_string(), "1000.5");
    }

    #[test]
    fn decimals_leave_as_strings() {
        let d = Dynamic::from_decimal(Decimal::from_str_exact("1183500.000").unwrap());
        assert_eq!(dynamic_to_json(&d), Json::String("1183500".into()));
    }
}
