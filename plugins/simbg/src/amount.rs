//! Exact money amounts as SIMBG and the levy answer write them (`"1624250.00"`, `1183500`):
//! compared and subtracted without floating point.

use serde_json::Value;

/// A decimal number: `mantissa × 10^-scale`.
#[derive(Debug, Clone, Copy)]
pub struct Amount {
    mantissa: i128,
    scale: u32,
}

impl Amount {
    /// Reads `-?digits(.digits)?` (surrounding blanks ignored); anything else is `None`.
    pub fn parse(text: &str) -> Option<Amount> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || whole.len() + fraction.len() > 30
        {
            return None;
        }
        let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
        Some(Amount {
            mantissa: if negative { -mantissa } else { mantissa },
            scale: u32::try_from(fraction.len()).ok()?,
        })
    }

    /// A JSON number or numeric text; null, empty or anything else is `None`.
    pub fn from_json(value: &Value) -> Option<Amount> {
        match value {
            Value::String(s) => Amount::parse(s),
            Value::Number(n) => Amount::parse(&n.to_string()),
            _ => None,
        }
    }

    fn at_scale(self, scale: u32) -> i128 {
        self.mantissa * 10i128.pow(scale - self.scale)
    }

    /// `self - other`, exactly.
    pub fn minus(self, other: Amount) -> Amount {
        let scale = self.scale.max(other.scale);
        Amount {
            mantissa: self.at_scale(scale) - other.at_scale(scale),
            scale,
        }
    }

    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// The shortest exact text: no trailing fraction zeros, no `.` for whole numbers.
    pub fn text(self) -> String {
        let negative = self.mantissa < 0;
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        let fraction = fraction.trim_end_matches('0');
        let sign = if negative { "-" } else { "" };
        if fraction.is_empty() {
            format!("{sign}{whole}")
        } else {
            format!("{sign}{whole}.{fraction}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_compare_exactly_whatever_their_form() {
        let simbg = Amount::parse("1624250.00").unwrap();
        let ours = Amount::parse("1696250").unwrap();
        assert_eq!(ours.minus(simbg).text(), "72000");
        assert_eq!(simbg.minus(ours).text(), "-72000");
        assert!(Amount::parse("1183500.00")
            .unwrap()
            .minus(Amount::parse("1183500").unwrap())
            .is_zero());
        assert_eq!(Amount::parse("0.10").unwrap().text(), "0.1");
        assert_eq!(Amount::parse("0.05").unwrap().text(), "0.05");
        assert_eq!(
            Amount::parse("10.5")
                .unwrap()
                .minus(Amount::parse("0.25").unwrap())
                .text(),
            "10.25"
        );
        assert_eq!(Amount::from_json(&json!(42.5)).unwrap().text(), "42.5");
        assert_eq!(
            Amount::from_json(&json!(1183500)).unwrap().text(),
            "1183500"
        );
        assert!(Amount::from_json(&json!(null)).is_none());
        assert!(Amount::parse("").is_none());
        assert!(Amount::parse("1e5").is_none());
        assert!(Amount::parse("Rp 100").is_none());
    }
}
