//! Operators between values that do not mix. Rhai answers `false` when a decimal is compared
//! with a string, so `data.luas > params.batas` with `batas = "10"` silently skips a limit; and
//! `()` (a map key that does not exist) compares `false` with every number. Here each such mix
//! is an error, located at the operator, naming both values and what to do.
//!
//! Integers and decimals still mix freely (Rhai's `decimal` feature widens the integer), and
//! `==`/`!=` against `()` stay legal: that is how a script tests for an absent value.

use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Variant, INT};
use rust_decimal::Decimal;

use super::api::MISSING;

const COMPARE: &[&str] = &["==", "!=", ">", ">=", "<", "<="];
const ORDER: &[&str] = &[">", ">=", "<", "<="];
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%", "**", "+=", "-=", "*=", "/=", "%="];

/// Registers the rejecting operators. The engine must run with fast operators off, or Rhai's
/// built-in fallbacks answer before these are looked up.
pub fn register(engine: &mut Engine) {
    let all: Vec<&'static str> = COMPARE.iter().chain(ARITHMETIC).copied().collect();
    let unit_ops: Vec<&'static str> = ORDER.iter().chain(ARITHMETIC).copied().collect();

    both_ways::<INT, ImmutableString>(engine, &all);
    both_ways::<Decimal, ImmutableString>(engine, &all);
    both_ways::<INT, bool>(engine, &all);
    both_ways::<Decimal, bool>(engine, &all);
    both_ways::<INT, ()>(engine, &unit_ops);
    both_ways::<Decimal, ()>(engine, &unit_ops);
    both_ways::<ImmutableString, ()>(engine, ORDER);
    reject::<(), ()>(engine, &unit_ops);
}

fn both_ways<A: Variant + Clone, B: Variant + Clone>(engine: &mut Engine, ops: &[&'static str]) {
    reject::<A, B>(engine, ops);
    reject::<B, A>(engine, ops);
}

fn reject<A: Variant + Clone, B: Variant + Clone>(engine: &mut Engine, ops: &[&'static str]) {
    for &op in ops {
        engine.register_fn(op, move |a: A, b: B| -> Result<bool, Box<EvalAltResult>> {
            Err(mixed(op, &Dynamic::from(a), &Dynamic::from(b)).into())
        });
    }
}

/// `cannot compare decimal 12.5 with string "10" using `>`: ...` and what to do about it.
fn mixed(op: &str, a: &Dynamic, b: &Dynamic) -> String {
    let verb = if COMPARE.contains(&op) {
        "compare"
    } else {
        "compute with"
    };
    let either = |f: fn(&Dynamic) -> bool| f(a) || f(b);
    let hint = if either(Dynamic::is_unit) {
        " (a map key or optional field that does not exist): check the key and the table row, \
         or test `\"key\" in map` first"
    } else if either(Dynamic::is_string) {
        if op.starts_with('+') {
            ": convert the text with decimal(...) to compute, or write `${x}` inside a template \
             string to put a number into text"
        } else {
            ": convert the text with decimal(...) first, e.g. `decimal(params.key)`"
        }
    } else {
        ": a boolean is not a number"
    };
    format!(
        "cannot {verb} {} and {} using `{op}`{hint}",
        shown(a),
        shown(b)
    )
}

fn shown(v: &Dynamic) -> String {
    if v.is_unit() {
        return MISSING.to_owned();
    }
    if let Some(s) = v.clone().try_cast::<ImmutableString>() {
        let mut text: String = s.chars().take(40).collect();
        if text.len() < s.len() {
            text.push('…');
        }
        return format!("string \"{text}\"");
    }
    if v.is_int() {
        return format!("integer {v}");
    }
    if v.is_decimal() {
        return format!("decimal {v}");
    }
    format!("{} {v}", v.type_name())
}

#[cfg(test)]
mod tests {
    use super::super::{ScriptErrorKind, ScriptHost};
    use crate::config::Limits;
    use std::collections::BTreeMap;

    fn run(body: &str) -> Result<rhai::Dynamic, super::super::ScriptError> {
        let h = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let s = h
            .compile("p/levy.rhai", &format!("fn f(p) {{\n  {body}\n}}"))
            .unwrap();
        let mut params = rhai::Map::new();
        params.insert("batas".into(), "10".into());
        params.insert("luas".into(), rhai::Dynamic::from_decimal(12.into()));
        h.call(
            &super::super::CallContext::default(),
            &s,
            "f",
            (rhai::Dynamic::from_map(params),),
        )
    }

    #[test]
    fn decimal_against_string_is_a_located_error_naming_both() {
        for expr in [
            "p.luas > p.batas",
            "p.luas < p.batas",
            "p.luas >= p.batas",
            "p.luas <= p.batas",
            "p.luas == p.batas",
            "p.luas != p.batas",
            "p.batas > p.luas",
            "p.luas + p.batas",
            "p.batas + p.luas",
            "p.luas - p.batas",
            "p.luas * p.batas",
            "p.luas / p.batas",
            "p.luas % p.batas",
            "12 > p.batas",
            "p.batas == 10",
            "p.batas + 1",
        ] {
            let e = run(expr).unwrap_err();
            assert_eq!(e.kind, ScriptErrorKind::Runtime, "{expr}: {e}");
            assert_eq!(
                (e.location.file.as_str(), e.location.line),
                ("p/levy.rhai", 2),
                "{expr}: {e}"
            );
            assert!(e.location.column > 0, "{expr}: {e}");
            assert!(e.message.contains("string \"10\""), "{expr}: {e}");
            assert!(
                e.message.contains("decimal 12") || e.message.contains("integer 1"),
                "{expr}: {e}"
            );
            assert!(e.message.contains("decimal("), "{expr}: {e}");
        }
    }

    #[test]
    fn membership_compares_like_equality() {
        // `in` and `contains` compare with `==`: a number looked up among texts is the same trap.
        let e = run("12 in [\"10\", \"12\"]").unwrap_err();
        assert!(e.message.contains("string \"10\""), "{e}");
        assert!(run("\"12\" in [\"10\", \"12\"]")
            .unwrap()
            .as_bool()
            .unwrap());
        assert!(run("12 in [10, 12.0]").unwrap().as_bool().unwrap());
    }

    #[test]
    fn compound_assignment_with_text_is_an_error() {
        let e = run("let x = p.luas; x += p.batas; x").unwrap_err();
        assert!(e.message.contains("string \"10\""), "{e}");
    }

    #[test]
    fn missing_values_do_not_compare_with_numbers() {
        for expr in [
            "p.tidak_ada > 5",
            "5 < p.tidak_ada",
            "p.luas >= p.tidak_ada",
            "p.luas * p.tidak_ada",
            "p.tidak_ada + 1",
            "p.tidak_ada < \"2024-01-01\"",
        ] {
            let e = run(expr).unwrap_err();
            assert!(e.message.contains("missing value `()`"), "{expr}: {e}");
            assert_eq!(e.location.line, 2, "{expr}: {e}");
        }
    }

    #[test]
    fn numbers_still_mix_and_absence_is_still_testable() {
        for (expr, want) in [
            ("p.luas > 10", true),
            ("10 < p.luas", true),
            ("p.luas == 12", true),
            ("12 == p.luas", true),
            ("p.luas + 1 == 13", true),
            ("(p.luas * 2) / 3 == 8", true),
            ("p.tidak_ada == ()", true),
            ("p.batas != ()", true),
            ("p.tidak_ada != 5", true),
            ("p.batas == \"10\"", true),
            ("\"2024-01-02\" > \"2024-01-01\"", true),
            ("decimal(p.batas) < p.luas", true),
        ] {
            let out = run(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!(out.as_bool().unwrap(), want, "{expr}");
        }
    }
}
