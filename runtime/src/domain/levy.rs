//! A levy (retribusi) assessment: line items, their exact total, and the trace that shows how
//! it was computed.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::value::decimal_string;

/// The only currency the office bills in.
pub const CURRENCY: &str = "IDR";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    pub code: String,
    pub label: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// Why line items make no assessment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssessmentError {
    #[error("levy total overflows")]
    TotalOverflows,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    items: Vec<LineItem>,
    /// INVARIANT: exactly the sum of `items`' amounts; computed here, never by the script.
    total: Decimal,
    trace: Json,
}

impl Assessment {
    /// The assessment of `items`, totalled exactly.
    pub fn new(items: Vec<LineItem>, trace: Json) -> Result<Self, AssessmentError> {
        let total = items.iter().try_fold(Decimal::ZERO, |sum, item| {
            sum.checked_add(item.amount)
                .ok_or(AssessmentError::TotalOverflows)
        })?;
        Ok(Self {
            items,
            total,
            trace,
        })
    }

    pub fn items(&self) -> &[LineItem] {
        &self.items
    }

    /// The exact sum of the items' amounts.
    pub fn total(&self) -> Decimal {
        self.total
    }

    pub fn trace(&self) -> &Json {
        &self.trace
    }

    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "total": decimal_string(self.total),
            "currency": CURRENCY,
            "items": self.items.iter().map(|i| serde_json::json!({
                "code": i.code,
                "label": i.label,
                "amount": decimal_string(i.amount),
            })).collect::<Vec<_>>(),
            "trace": self.trace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(code: &str, amount: Decimal) -> LineItem {
        LineItem {
            code: code.to_owned(),
            label: code.to_owned(),
            amount,
        }
    }

    #[test]
    fn the_total_is_the_exact_sum_and_cannot_overflow() {
        let a = Assessment::new(
            vec![
                item("a", Decimal::from_str_exact("0.1").unwrap()),
                item("b", Decimal::from_str_exact("0.2").unwrap()),
            ],
            Json::Null,
        )
        .unwrap();
        assert_eq!(a.total(), Decimal::from_str_exact("0.3").unwrap());
        assert_eq!(a.to_json()["total"], "0.3");
        let e = Assessment::new(
            vec![item("a", Decimal::MAX), item("b", Decimal::ONE)],
            Json::Null,
        )
        .unwrap_err();
        assert_eq!(e, AssessmentError::TotalOverflows);
    }
}
