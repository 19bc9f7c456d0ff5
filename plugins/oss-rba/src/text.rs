//! Reading OSS's JSON leniently: the real payload mixes text, numbers, nulls and empty strings,
//! and leaves optional arrays out.

use serde_json::Value;

/// A value as trimmed text: strings as they are, numbers in their JSON form, anything else
/// (null, missing, objects) empty.
pub fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// `value[key]` as text (see [`text`]).
pub fn field(value: &Value, key: &str) -> String {
    text(value.get(key))
}

/// `value[key]` as a list: missing, null or not a list is empty.
pub fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A two-digit code as OSS writes it (`2` → `02`), for codes that arrive as numbers.
pub fn code2(value: &str) -> String {
    if value.len() == 1 && value.bytes().all(|b| b.is_ascii_digit()) {
        format!("0{value}")
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_as_text_whatever_their_json_type() {
        let v = json!({"a": " x ", "b": 12, "c": null, "d": {}, "e": ""});
        assert_eq!(field(&v, "a"), "x");
        assert_eq!(field(&v, "b"), "12");
        assert_eq!(field(&v, "c"), "");
        assert_eq!(field(&v, "d"), "");
        assert_eq!(field(&v, "missing"), "");
        assert!(list(&v, "c").is_empty());
        assert!(list(&v, "missing").is_empty());
        assert_eq!(code2("2"), "02");
        assert_eq!(code2("02"), "02");
    }
}
