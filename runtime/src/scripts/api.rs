//! The functions a rule script may call beyond Rhai's core language. Every function registered
//! here is documented for rule authors in `host-api/SCRIPT_API.md`; a unit test keeps the two
//! in step.

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};
use rhai::{
    Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, NativeCallContext, INT,
};

use super::deadline::Deadline;
use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// How errors name `()`, the value of a map key or optional field that does not exist. Error
/// messages containing it also quote the script line (see `ScriptHost::call`), so the author
/// can find the key.
pub const MISSING: &str = "a missing value `()`";

/// Names of every registered function, for the documentation check and editor definitions.
pub const FUNCTIONS: &[&str] = &[
    "decimal",
    "round_dp",
    "round_money",
    "rupiah",
    "terbilang",
    "roman",
    "today",
    "is_date",
    "add_days",
    "add_months",
    "add_years",
    "days_between",
    "weekday",
    "is_working_day",
    "add_working_days",
];

/// Registers one function with its signature and doc comment, so editors get completion and
/// help from the generated definition files.
macro_rules! script_fn {
    ($engine:expr, $name:literal, [$($sig:literal),*], $doc:literal, $f:expr) => {
        FuncRegistration::new($name)
            .with_params_info([$($sig),*])
            .with_comments([concat!("/// ", $doc)])
            .register_into_engine($engine, $f);
    };
}

pub fn register(engine: &mut Engine) {
    script_fn!(
        engine,
        "decimal",
        ["x: ?", "decimal"],
        "Exact decimal from a string (\"1250.5\"), an integer or a decimal.",
        |x: Dynamic| to_decimal(&x)
    );
    script_fn!(
        engine,
        "round_dp",
        ["x: ?", "places: int", "mode: string", "decimal"],
        "Round to `places` decimals; mode: half_up, half_even, ceil, floor, truncate.",
        |x: Dynamic, places: INT, mode: &str| round_dp(to_decimal(&x)?, places, mode)
    );
    script_fn!(engine, "round_money", ["x: ?", "policy: string", "decimal"],
        "Round money: none, half_up_rupiah, ceil_rupiah, truncate_rupiah, half_up_100, ceil_100, truncate_100.",
        |x: Dynamic, policy: &str| round_money(to_decimal(&x)?, policy));
    script_fn!(
        engine,
        "rupiah",
        ["x: ?", "string"],
        "Format as rupiah: \"Rp 1.183.500\" (\",50\" when there are cents).",
        |x: Dynamic| rupiah(to_decimal(&x)?)
    );
    script_fn!(
        engine,
        "terbilang",
        ["x: ?", "string"],
        "The integer part in Indonesian words: \"satu juta seratus ribu\".",
        |x: Dynamic| Ok::<_, Box<EvalAltResult>>(terbilang(to_decimal(&x)?))
    );
    script_fn!(
        engine,
        "roman",
        ["n: int", "string"],
        "Roman numerals for 1..=3999 (months in document numbers).",
        roman
    );
    // Volatile: the optimizer must not fold `today()` into a constant at compile time.
    FuncRegistration::new("today")
        .with_volatility(true)
        .with_params_info(["string"])
        .with_comments([
            "/// The office's date of this evaluation (YYYY-MM-DD); fixtures set it with `today`.",
        ])
        .register_into_engine(engine, |ctx: NativeCallContext| {
            super::call_state(&ctx).and_then(|s| s.today).map(iso).ok_or_else(|| {
                err("today() has no date here: a fixture of rules that read the date must set `today`"
                    .to_owned())
            })
        });
    script_fn!(
        engine,
        "is_date",
        ["s: string", "bool"],
        "Whether `s` is a valid YYYY-MM-DD date.",
        |s: &str| parse_date(s).is_ok()
    );
    script_fn!(
        engine,
        "add_days",
        ["date: string", "n: int", "string"],
        "The date `n` calendar days later (earlier when negative).",
        |s: &str, n: INT| {
            let d = parse_date(s)?;
            let out = if n >= 0 {
                d.checked_add_days(Days::new(n.unsigned_abs()))
            } else {
                d.checked_sub_days(Days::new(n.unsigned_abs()))
            };
            out.map(iso)
                .ok_or_else(|| err(format!("date out of range: `{s}` plus {n} days")))
        }
    );
    script_fn!(
        engine,
        "add_months",
        ["date: string", "n: int", "string"],
        "The date `n` months later, clamped to the month's end.",
        |s: &str, n: INT| add_months(s, n)
    );
    script_fn!(
        engine,
        "add_years",
        ["date: string", "n: int", "string"],
        "The date `n` years later, clamped to the month's end.",
        |s: &str, n: INT| add_months(s, n.saturating_mul(12))
    );
    script_fn!(
        engine,
        "days_between",
        ["from: string", "to: string", "int"],
        "Days from `from` to `to` (negative when `to` is earlier).",
        |a: &str, b: &str| Ok::<_, Box<EvalAltResult>>(
            (parse_date(b)? - parse_date(a)?).num_days()
        )
    );
    script_fn!(
        engine,
        "weekday",
        ["date: string", "int"],
        "Day of the week: 1 = Monday .. 7 = Sunday.",
        |s: &str| Ok::<_, Box<EvalAltResult>>(INT::from(
            parse_date(s)?.weekday().number_from_monday()
        ))
    );
    script_fn!(
        engine,
        "is_working_day",
        ["date: string", "holidays: array", "bool"],
        "Not a Saturday, Sunday or one of `holidays` (YYYY-MM-DD strings).",
        |ctx: NativeCallContext, s: &str, holidays: rhai::Array| {
            let deadline = deadline_of(&ctx);
            let holidays = holiday_list(&holidays, deadline.as_ref())?;
            Ok::<_, Box<EvalAltResult>>(is_working_day(parse_date(s)?, &holidays))
        }
    );
    script_fn!(
        engine,
        "add_working_days",
        ["date: string", "n: int", "holidays: array", "string"],
        "The date `n` working days after `date`, not counting `date` itself.",
        |ctx: NativeCallContext, s: &str, n: INT, holidays: rhai::Array| {
            let deadline = deadline_of(&ctx);
            let holidays = holiday_list(&holidays, deadline.as_ref())?;
            add_working_days(parse_date(s)?, n, &holidays, deadline.as_ref()).map(iso)
        }
    );
}

/// The deadline of the call `ctx` belongs to, for native functions that loop.
fn deadline_of(ctx: &NativeCallContext) -> Option<Deadline> {
    super::call_state(ctx).and_then(|s| s.deadline)
}

fn err(message: String) -> Box<EvalAltResult> {
    message.into()
}

/// Exact conversion of a script value to a decimal; strings are parsed, never through floats.
pub fn to_decimal(x: &Dynamic) -> Res<Decimal> {
    if x.is_unit() {
        return Err(err(format!(
            "expected a number, got {MISSING} (a map key or optional field that does not exist): \
             check the key and the table row, or test `\"key\" in map` first"
        )));
    }
    if let Ok(d) = x.as_decimal() {
        return Ok(d);
    }
    if let Ok(i) = x.as_int() {
        return Ok(Decimal::from(i));
    }
    if let Ok(s) = x.as_immutable_string_ref() {
        return parse_decimal(s.trim()).ok_or_else(|| err(format!("not a decimal: `{}`", &*s)));
    }
    Err(err(format!("expected a number, got {}", x.type_name())))
}

pub use crate::domain::parse_decimal;

fn strategy(mode: &str) -> Res<RoundingStrategy> {
    Ok(match mode {
        "half_up" => RoundingStrategy::MidpointAwayFromZero,
        "half_even" => RoundingStrategy::MidpointNearestEven,
        "ceil" => RoundingStrategy::ToPositiveInfinity,
        "floor" => RoundingStrategy::ToNegativeInfinity,
        "truncate" => RoundingStrategy::ToZero,
        other => {
            return Err(err(format!(
                "unknown rounding mode `{other}` (expected half_up, half_even, ceil, floor or truncate)"
            )))
        }
    })
}

pub fn round_dp(x: Decimal, places: INT, mode: &str) -> Res<Decimal> {
    let places = u32::try_from(places)
        .ok()
        .filter(|p| *p <= 20)
        .ok_or_else(|| err(format!("decimal places must be 0..=20, got {places}")))?;
    Ok(x.round_dp_with_strategy(places, strategy(mode)?))
}

/// Money rounding policies as regional regulations phrase them.
pub fn round_money(x: Decimal, policy: &str) -> Res<Decimal> {
    let hundred = Decimal::ONE_HUNDRED;
    let (unit, mode) = match policy {
        "none" => return Ok(x),
        "half_up_rupiah" => (Decimal::ONE, "half_up"),
        "ceil_rupiah" => (Decimal::ONE, "ceil"),
        "truncate_rupiah" => (Decimal::ONE, "truncate"),
        "half_up_100" => (hundred, "half_up"),
        "ceil_100" => (hundred, "ceil"),
        "truncate_100" => (hundred, "truncate"),
        other => {
            return Err(err(format!(
                "unknown money rounding `{other}` (expected none, half_up_rupiah, ceil_rupiah, \
                 truncate_rupiah, half_up_100, ceil_100 or truncate_100)"
            )))
        }
    };
    let units = x
        .checked_div(unit)
        .ok_or_else(|| err("overflow while rounding money".to_owned()))?;
    units
        .round_dp_with_strategy(0, strategy(mode)?)
        .checked_mul(unit)
        .ok_or_else(|| err(format!("amount too large to round as money: `{x}`")))
}

/// `Rp 1.183.500`, or `Rp 1.183.500,50` when there are cents; Indonesian separators.
pub fn rupiah(x: Decimal) -> Res<String> {
    let rounded = x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let sign = if rounded.is_sign_negative() && !rounded.is_zero() {
        "-"
    } else {
        ""
    };
    let abs = rounded.abs();
    let whole = abs.trunc();
    let cents = abs
        .checked_sub(whole)
        .and_then(|fraction| fraction.checked_mul(Decimal::ONE_HUNDRED))
        .ok_or_else(|| err(format!("amount too large to format as rupiah: `{x}`")))?
        .trunc();
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    Ok(if cents.is_zero() {
        format!("{sign}Rp {grouped}")
    } else {
        format!("{sign}Rp {grouped},{cents:0>2}")
    })
}

const ONES: [&str; 12] = [
    "", "satu", "dua", "tiga", "empat", "lima", "enam", "tujuh", "delapan", "sembilan", "sepuluh",
    "sebelas",
];

fn below_thousand(n: u128) -> String {
    let word = |i: u128| ONES.get(i as usize).copied().unwrap_or_default();
    match n {
        0..=11 => word(n).to_owned(),
        12..=19 => format!("{} belas", word(n - 10)),
        20..=99 => join(&format!("{} puluh", word(n / 10)), &below_thousand(n % 10)),
        100..=199 => join("seratus", &below_thousand(n - 100)),
        _ => join(
            &format!("{} ratus", word(n / 100)),
            &below_thousand(n % 100),
        ),
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a} {b}"),
    }
}

/// Indonesian words for the integer part: `1183500` → `satu juta seratus delapan puluh tiga
/// ribu lima ratus`. Rule authors append "rupiah" and capitalise as their document needs.
pub fn terbilang(x: Decimal) -> String {
    let whole = x.trunc();
    let negative = whole.is_sign_negative() && !whole.is_zero();
    let Ok(mut n) = u128::from_str(&whole.abs().to_string()) else {
        return String::new();
    };
    if n == 0 {
        return "nol".to_owned();
    }
    const SCALES: [&str; 6] = ["", "ribu", "juta", "miliar", "triliun", "kuadriliun"];
    let mut parts: Vec<String> = Vec::new();
    let mut scale = 0usize;
    while n > 0 {
        let chunk = n % 1000;
        n /= 1000;
        if chunk > 0 {
            let name = SCALES.get(scale).copied().unwrap_or("kuintiliun");
            let words = if scale == 1 && chunk == 1 {
                "seribu".to_owned()
            } else {
                join(&below_thousand(chunk), name)
            };
            parts.push(words);
        }
        scale += 1;
    }
    parts.reverse();
    let words = parts.join(" ");
    if negative {
        format!("minus {words}")
    } else {
        words
    }
}

/// Roman numerals for 1..=3999, as used for months in document numbers.
pub fn roman(n: INT) -> Res<String> {
    if !(1..=3999).contains(&n) {
        return Err(err(format!("roman numerals cover 1..=3999, got {n}")));
    }
    const TABLE: [(INT, &str); 13] = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ];
    let mut rest = n;
    let mut out = String::new();
    for (value, digits) in TABLE {
        while rest >= value {
            out.push_str(digits);
            rest -= value;
        }
    }
    Ok(out)
}

pub fn parse_date(s: &str) -> Res<NaiveDate> {
    crate::domain::parse_date(s).ok_or_else(|| err(format!("not a date (YYYY-MM-DD): `{s}`")))
}

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn add_months(s: &str, n: INT) -> Res<String> {
    let d = parse_date(s)?;
    let months = Months::new(
        u32::try_from(n.unsigned_abs()).map_err(|_| err(format!("too many months: {n}")))?,
    );
    let out = if n >= 0 {
        d.checked_add_months(months)
    } else {
        d.checked_sub_months(months)
    };
    out.map(iso)
        .ok_or_else(|| err(format!("date out of range: `{s}` plus {n} months")))
}

/// Holidays sorted for binary search. Parsing a long list is the slow part of the working-day
/// functions, so it stops at the script's deadline.
fn holiday_list(holidays: &rhai::Array, deadline: Option<&Deadline>) -> Res<Vec<NaiveDate>> {
    let mut out = Vec::with_capacity(holidays.len());
    for (i, h) in holidays.iter().enumerate() {
        if let Some(d) = deadline.filter(|_| i % 256 == 255) {
            d.check()?;
        }
        let s = h.clone().try_cast::<ImmutableString>().ok_or_else(|| {
            err(format!(
                "holidays must be date strings, got {}",
                h.type_name()
            ))
        })?;
        out.push(parse_date(&s)?);
    }
    out.sort_unstable();
    Ok(out)
}

/// `holidays` sorted, as `holiday_list` returns them.
pub fn is_working_day(d: NaiveDate, holidays: &[NaiveDate]) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && holidays.binary_search(&d).is_err()
}

/// Counts `n` working days forward (or backward when negative) from `d`, not counting `d`;
/// `holidays` sorted. The walk stops at the script's deadline.
pub fn add_working_days(
    d: NaiveDate,
    n: INT,
    holidays: &[NaiveDate],
    deadline: Option<&Deadline>,
) -> Res<NaiveDate> {
    if n.unsigned_abs() > 10_000 {
        return Err(err(format!("too many working days: {n}")));
    }
    let mut current = d;
    let mut left = n.unsigned_abs();
    while left > 0 {
        current = if n > 0 {
            current.succ_opt()
        } else {
            current.pred_opt()
        }
        .ok_or_else(|| err("date out of range".to_owned()))?;
        if is_working_day(current, holidays) {
            left -= 1;
        }
        if let Some(d) = deadline.filter(|_| left.is_multiple_of(256)) {
            d.check()?;
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn rounding_modes_follow_their_names() {
        assert_eq!(round_dp(dec("1.1067"), 3, "half_up").unwrap(), dec("1.107"));
        assert_eq!(round_dp(dec("0.2625"), 3, "half_up").unwrap(), dec("0.263"));
        assert_eq!(
            round_dp(dec("0.2625"), 3, "half_even").unwrap(),
            dec("0.262")
        );
        assert_eq!(round_dp(dec("0.7461"), 3, "ceil").unwrap(), dec("0.747"));
        assert_eq!(
            round_dp(dec("0.3009"), 3, "truncate").unwrap(),
            dec("0.300")
        );
        assert_eq!(round_dp(dec("-0.3009"), 3, "floor").unwrap(), dec("-0.301"));
        let e = round_dp(dec("1"), 3, "up").unwrap_err().to_string();
        assert!(e.contains("unknown rounding mode `up`"), "{e}");
        let e = round_dp(dec("1"), -1, "ceil").unwrap_err().to_string();
        assert!(e.contains("decimal places must be 0..=20, got -1"), "{e}");
    }

    #[test]
    fn money_rounding_to_rupiah_and_hundreds() {
        assert_eq!(
            round_money(dec("34607587.5"), "half_up_rupiah").unwrap(),
            dec("34607588")
        );
        assert_eq!(
            round_money(dec("50793.75"), "ceil_rupiah").unwrap(),
            dec("50794")
        );
        assert_eq!(
            round_money(dec("1183501"), "ceil_100").unwrap(),
            dec("1183600")
        );
        assert_eq!(
            round_money(dec("1183549.99"), "half_up_100").unwrap(),
            dec("1183500")
        );
        assert_eq!(
            round_money(dec("1183599"), "truncate_100").unwrap(),
            dec("1183500")
        );
        assert_eq!(round_money(dec("12.345"), "none").unwrap(), dec("12.345"));
        let e = round_money(dec("1"), "round").unwrap_err().to_string();
        assert!(e.contains("unknown money rounding `round`"), "{e}");
    }

    #[test]
    fn money_rounding_past_the_largest_decimal_is_an_error_not_a_panic() {
        // Rounding the largest decimal up to a multiple of 100 goes past it.
        let e = round_money(Decimal::MAX, "ceil_100").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        assert_eq!(
            round_money(Decimal::MAX, "truncate_100").unwrap(),
            dec("79228162514264337593543950300")
        );
    }

    #[test]
    fn decimal_of_a_missing_value_says_so() {
        let e = to_decimal(&Dynamic::UNIT).unwrap_err().to_string();
        assert!(e.contains(MISSING), "{e}");
        assert!(e.contains("key"), "{e}");
    }

    #[test]
    fn rupiah_uses_indonesian_separators() {
        assert_eq!(rupiah(dec("1183500")).unwrap(), "Rp 1.183.500");
        assert_eq!(rupiah(dec("500")).unwrap(), "Rp 500");
        assert_eq!(rupiah(dec("1000")).unwrap(), "Rp 1.000");
        assert_eq!(rupiah(dec("34607587.5")).unwrap(), "Rp 34.607.587,50");
        assert_eq!(rupiah(dec("-2500")).unwrap(), "-Rp 2.500");
        assert_eq!(
            rupiah(Decimal::MAX).unwrap(),
            "Rp 79.228.162.514.264.337.593.543.950.335"
        );
    }

    #[test]
    fn terbilang_reads_numbers_in_indonesian() {
        assert_eq!(terbilang(dec("0")), "nol");
        assert_eq!(terbilang(dec("11")), "sebelas");
        assert_eq!(terbilang(dec("15")), "lima belas");
        assert_eq!(terbilang(dec("100")), "seratus");
        assert_eq!(terbilang(dec("1000")), "seribu");
        assert_eq!(terbilang(dec("1001")), "seribu satu");
        assert_eq!(terbilang(dec("2019")), "dua ribu sembilan belas");
        assert_eq!(
            terbilang(dec("1183500")),
            "satu juta seratus delapan puluh tiga ribu lima ratus"
        );
        assert_eq!(
            terbilang(dec("9461600")),
            "sembilan juta empat ratus enam puluh satu ribu enam ratus"
        );
        assert_eq!(terbilang(dec("1000000000")), "satu miliar");
        assert_eq!(terbilang(dec("-21")), "minus dua puluh satu");
    }

    #[test]
    fn roman_months() {
        assert_eq!(roman(4).unwrap(), "IV");
        assert_eq!(roman(9).unwrap(), "IX");
        assert_eq!(roman(12).unwrap(), "XII");
        assert_eq!(roman(2024).unwrap(), "MMXXIV");
        let e = roman(0).unwrap_err().to_string();
        assert!(e.contains("roman numerals cover 1..=3999, got 0"), "{e}");
    }

    #[test]
    fn working_days_skip_weekends_and_holidays() {
        let friday = parse_date("2026-11-27").unwrap();
        let holiday = parse_date("2026-12-01").unwrap();
        // Fri + 1 working day = Mon; + 2 skips the holiday on Tue to Wed.
        assert_eq!(
            iso(add_working_days(friday, 1, &[holiday], None).unwrap()),
            "2026-11-30"
        );
        assert_eq!(
            iso(add_working_days(friday, 2, &[holiday], None).unwrap()),
            "2026-12-02"
        );
        assert_eq!(
            iso(add_working_days(friday, -1, &[], None).unwrap()),
            "2026-11-26"
        );
        assert!(!is_working_day(parse_date("2026-11-28").unwrap(), &[]));
        let unsorted: rhai::Array = vec!["2026-12-25".into(), "2026-12-01".into()];
        let list = holiday_list(&unsorted, None).unwrap();
        assert!(!is_working_day(holiday, &list));
        assert!(!is_working_day(parse_date("2026-12-25").unwrap(), &list));
    }

    #[test]
    fn working_day_walk_stops_at_the_deadline() {
        let friday = parse_date("2026-11-27").unwrap();
        let deadline = Deadline::after(std::time::Duration::ZERO);
        let e = add_working_days(friday, 10_000, &[], Some(&deadline)).unwrap_err();
        assert!(
            matches!(*e, EvalAltResult::ErrorTerminated(..)),
            "the walk stops with the wall-clock error: {e}"
        );
    }

    #[test]
    fn month_arithmetic_clamps_to_month_end() {
        assert_eq!(add_months("2024-01-31", 1).unwrap(), "2024-02-29");
        assert_eq!(add_months("2024-03-15", -3).unwrap(), "2023-12-15");
        let e = parse_date("2024-02-30").unwrap_err().to_string();
        assert!(e.contains("not a date (YYYY-MM-DD): `2024-02-30`"), "{e}");
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("1250.5"), Some(dec("1250.5")));
        assert_eq!(parse_decimal("1.2505e3"), Some(dec("1250.5")));
        assert_eq!(parse_decimal("0.1"), Some(dec("0.1")));
        assert_eq!(parse_decimal("abc"), None);
    }
}
