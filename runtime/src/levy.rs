//! Reading the levy (retribusi) a script assessed into the domain's [`Assessment`], whose
//! constructor totals the line items exactly.

use rhai::Dynamic;
#[cfg(test)]
use rhai::Map;
use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::diagnostic::Diagnostic;
use crate::scripts::shared::into_map;
use crate::scripts::value::dynamic_to_json;
use crate::scripts::{ScriptError, ScriptErrorKind};

pub use crate::domain::levy::{Assessment, AssessmentError, LineItem, CURRENCY};

/// Reads what `levy(data, params)` returned: `#{ items: [#{code, label, amount}], trace: #{..} }`.
pub fn from_script(value: Dynamic, file: &str) -> Result<Assessment, ScriptError> {
    let bad = |message: String| ScriptError {
        kind: ScriptErrorKind::Runtime,
        location: Diagnostic::file(file, ""),
        message,
    };
    let mut map = into_map(value)
        .ok_or_else(|| bad("levy must return a map `#{ items: [...], trace: #{...} }`".into()))?;
    let items = map
        .remove("items")
        .and_then(|i| i.try_cast::<rhai::Array>())
        .ok_or_else(|| bad("levy result needs `items`, an array".into()))?;
    let mut out = Vec::with_capacity(items.len());
    let mut total = Decimal::ZERO;
    for (n, item) in items.into_iter().enumerate() {
        let item = into_map(item).ok_or_else(|| {
            bad(format!(
                "levy item {n} must be a map `#{{code, label, amount}}`"
            ))
        })?;
        let text = |key: &str| {
            item.get(key)
                .and_then(|v| v.as_immutable_string_ref().ok().map(|s| s.to_string()))
        };
        let code = text("code").ok_or_else(|| bad(format!("levy item {n} needs a text `code`")))?;
        let label = text("label").unwrap_or_else(|| code.clone());
        let amount = item
            .get("amount")
            .and_then(|a| crate::scripts::api::to_decimal(a).ok())
            .ok_or_else(|| bad(format!("levy item `{code}` needs a numeric `amount`")))?;
        // Checked as the items are read, so an overflow is reported before later items' faults,
        // as it always was; the assessment's constructor totals them for good.
        total = total
            .checked_add(amount)
            .ok_or_else(|| bad(AssessmentError::TotalOverflows.to_string()))?;
        out.push(LineItem {
            code,
            label,
            amount,
        });
    }
    let trace = map.get("trace").map_or(Json::Null, dynamic_to_json);
    Assessment::new(out, trace).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_is_the_exact_sum_of_items() {
        let mut a = Map::new();
        a.insert("code".into(), Dynamic::from("a"));
        a.insert(
            "amount".into(),
            Dynamic::from_decimal(Decimal::from_str_exact("0.1").unwrap()),
        );
        let mut b = Map::new();
        b.insert("code".into(), Dynamic::from("b"));
        b.insert(
            "amount".into(),
            Dynamic::from_decimal(Decimal::from_str_exact("0.2").unwrap()),
        );
        let mut m = Map::new();
        m.insert(
            "items".into(),
            Dynamic::from_array(vec![a.into(), b.into()]),
        );
        let out = from_script(Dynamic::from_map(m), "p/levy.rhai").unwrap();
        assert_eq!(out.total(), Decimal::from_str_exact("0.3").unwrap());
        assert_eq!(out.to_json()["total"], "0.3");
    }

    #[test]
    fn malformed_results_are_script_errors() {
        let e = from_script(Dynamic::from(1_i64), "p/levy.rhai").unwrap_err();
        assert!(e.message.contains("levy must return a map"), "{e}");
        let mut m = Map::new();
        m.insert(
            "items".into(),
            Dynamic::from_array(vec![Dynamic::from("x")]),
        );
        let e = from_script(Dynamic::from_map(m), "p/levy.rhai").unwrap_err();
        assert!(e.message.contains("item 0"), "{e}");
    }
}
