//! `calendar.toml` at the top of the rules tree: the office's weekend days, dated national
//! holidays and office days off. Part of the release like every rule file (its content hash
//! included), so a change to it is a reload; each problem is located at its value.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::NaiveDate;
use toml_edit::{Item, TableLike};

use crate::diagnostic::Diagnostic;
use crate::domain::calendar::{weekday, Calendar, WEEKDAYS};
use crate::domain::parse_date;

/// The calendar of `text` (the file `path`), or every problem found in it.
pub fn parse(path: &str, text: &str) -> Result<Calendar, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let at = |span: Option<Range<usize>>, message: String| match span {
        Some(span) => Diagnostic::at_offset(path, text, span.start, message),
        None => Diagnostic::file(path, message),
    };
    let doc = match toml_edit::Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => return Err(vec![at(e.span(), e.message().trim_end().to_owned())]),
    };
    for (key, _) in doc.iter() {
        if !matches!(key, "weekend" | "holiday" | "day_off") {
            problems.push(at(
                doc.key(key).and_then(toml_edit::Key::span),
                format!("unknown key `{key}` (calendar.toml has `weekend`, [[holiday]] and [[day_off]])"),
            ));
        }
    }
    let mut weekend = Vec::new();
    match doc.get("weekend") {
        None => weekend.extend([chrono::Weekday::Sat, chrono::Weekday::Sun]),
        Some(Item::Value(toml_edit::Value::Array(days))) => {
            for day in days {
                match day.as_str().and_then(weekday) {
                    Some(d) if weekend.contains(&d) => problems.push(at(
                        day.span(),
                        format!("weekend: `{}` is listed twice", day.as_str().unwrap_or("")),
                    )),
                    Some(d) => weekend.push(d),
                    None => problems.push(at(
                        day.span(),
                        format!(
                            "weekend: `{}` is not a weekday name ({})",
                            day.to_string().trim(),
                            WEEKDAYS.map(|(n, _)| n).join(", ")
                        ),
                    )),
                }
            }
        }
        Some(other) => problems.push(at(
            other.span(),
            "`weekend` is a list of weekday names, e.g. [\"saturday\", \"sunday\"]".to_owned(),
        )),
    }
    let holidays = dated(&doc, "holiday", &at, &mut problems);
    let days_off = dated(&doc, "day_off", &at, &mut problems);
    let calendar = Calendar::new(weekend, holidays, days_off).map_err(|e| {
        vec![at(
            doc.get("weekend").and_then(Item::span),
            format!("weekend: {e}"),
        )]
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    calendar
}

/// The `[[list]]` entries of `doc`, each `date` (`"YYYY-MM-DD"` or a TOML date) and `name`.
fn dated(
    doc: &toml_edit::Document<&str>,
    list: &str,
    at: &dyn Fn(Option<Range<usize>>, String) -> Diagnostic,
    problems: &mut Vec<Diagnostic>,
) -> BTreeMap<NaiveDate, String> {
    let mut days = BTreeMap::new();
    let entries: Vec<(&dyn TableLike, Option<Range<usize>>)> = match doc.get(list) {
        None => return days,
        Some(Item::ArrayOfTables(tables)) => tables
            .iter()
            .map(|t| (t as &dyn TableLike, t.span()))
            .collect(),
        Some(Item::Value(toml_edit::Value::Array(items)))
            if items.iter().all(|i| i.is_inline_table()) =>
        {
            items
                .iter()
                .filter_map(|i| i.as_inline_table().map(|t| (t as &dyn TableLike, t.span())))
                .collect()
        }
        Some(other) => {
            problems.push(at(
                other.span(),
                format!("`{list}` is a list of tables: [[{list}]] with `date` and `name`"),
            ));
            return days;
        }
    };
    for (entry, span) in entries {
        for (key, _) in entry.iter() {
            if !matches!(key, "date" | "name") {
                problems.push(at(
                    entry.key(key).and_then(toml_edit::Key::span),
                    format!("[[{list}]]: unknown key `{key}` (an entry has `date` and `name`)"),
                ));
            }
        }
        let date_item = entry.get("date");
        let date_span = date_item.and_then(Item::span).or_else(|| span.clone());
        let date = match date_item.and_then(Item::as_value) {
            Some(toml_edit::Value::String(s)) => parse_date(s.value())
                .ok_or_else(|| format!("[[{list}]]: `{}` is not a date (YYYY-MM-DD)", s.value())),
            Some(toml_edit::Value::Datetime(d)) => {
                let value = d.value();
                match (value.date, value.time) {
                    (Some(date), None) => NaiveDate::from_ymd_opt(
                        i32::from(date.year),
                        u32::from(date.month),
                        u32::from(date.day),
                    )
                    .ok_or_else(|| format!("[[{list}]]: `{value}` is not a date")),
                    _ => Err(format!(
                        "[[{list}]]: `{value}` is not a date (YYYY-MM-DD, without a time)"
                    )),
                }
            }
            Some(other) => Err(format!(
                "[[{list}]]: `date` must be a date (YYYY-MM-DD), not `{}`",
                other.to_string().trim()
            )),
            None => Err(format!("[[{list}]]: every entry needs a `date`")),
        };
        let name = match entry.get("name").and_then(Item::as_str) {
            Some(n) if !n.trim().is_empty() => Some(n.to_owned()),
            _ => {
                problems.push(at(
                    entry
                        .get("name")
                        .and_then(Item::span)
                        .or_else(|| span.clone()),
                    format!("[[{list}]]: every entry needs a `name` (text)"),
                ));
                None
            }
        };
        match date {
            Ok(date) => match days.entry(date) {
                std::collections::btree_map::Entry::Occupied(_) => {
                    problems.push(at(date_span, format!("[[{list}]]: {date} is listed twice")))
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    if let Some(name) = name {
                        slot.insert(name);
                    }
                }
            },
            Err(message) => problems.push(at(date_span, message)),
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse("calendar.toml", text) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_calendar_reads_weekend_holidays_and_days_off() {
        let c = parse(
            "calendar.toml",
            "weekend = [\"saturday\", \"sunday\"]\n\n[[holiday]]\ndate = \"2026-01-01\"\nname = \"Tahun Baru 2026 Masehi\"\n\n[[holiday]]\ndate = 2026-03-20\nname = \"Idul Fitri\"\n\n[[day_off]]\ndate = \"2026-03-19\"\nname = \"Cuti bersama\"\n",
        )
        .unwrap();
        let d = |s| parse_date(s).unwrap();
        assert!(!c.is_working_day(d("2026-01-01")));
        assert_eq!(c.closed_for(d("2026-03-20")), Some("Idul Fitri"));
        assert_eq!(c.add_working_days(d("2026-03-18"), 1), d("2026-03-23"));
        assert_eq!(parse("calendar.toml", "").unwrap(), Calendar::default());
    }

    #[test]
    fn bad_dates_and_weekday_names_are_located() {
        assert_eq!(
            problems("weekend = [\"saturday\", \"minggu\"]\n"),
            ["calendar.toml:1:24: weekend: `\"minggu\"` is not a weekday name (monday, tuesday, wednesday, thursday, friday, saturday, sunday)"]
        );
        assert_eq!(
            problems("[[holiday]]\ndate = \"2026-02-30\"\nname = \"x\"\n"),
            ["calendar.toml:2:8: [[holiday]]: `2026-02-30` is not a date (YYYY-MM-DD)"]
        );
        assert_eq!(
            problems("[[day_off]]\ndate = \"2026-01-02\"\n"),
            ["calendar.toml:1:1: [[day_off]]: every entry needs a `name` (text)"]
        );
        assert_eq!(
            problems("[[holiday]]\ndate = \"2026-01-01\"\nname = \"a\"\n[[holiday]]\ndate = \"2026-01-01\"\nname = \"b\"\n"),
            ["calendar.toml:5:8: [[holiday]]: 2026-01-01 is listed twice"]
        );
        assert_eq!(
            problems("libur = 1\n"),
            ["calendar.toml:1:1: unknown key `libur` (calendar.toml has `weekend`, [[holiday]] and [[day_off]])"]
        );
        let every = "weekend = [\"monday\", \"tuesday\", \"wednesday\", \"thursday\", \"friday\", \"saturday\", \"sunday\"]\n";
        assert_eq!(problems(every).len(), 1);
        assert!(problems("weekend = [\n").len() == 1);
    }
}
