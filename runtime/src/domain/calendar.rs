//! The office's working days: weekends, dated national holidays and office days off (*cuti
//! bersama*). Step deadlines (`sla_days`) count working days only.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};

/// Weekday names as `rules/calendar.toml` writes them, Monday first.
pub const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

/// A weekday by its name in `calendar.toml` (`"saturday"`), case-insensitive.
pub fn weekday(name: &str) -> Option<Weekday> {
    WEEKDAYS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, d)| *d)
}

/// Why a calendar cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("every day of the week is a weekend day: no day would ever be a working day")]
    NoWorkingDay,
}

/// The working-day calendar of a release. [`Calendar::default`] has Saturday and Sunday off and
/// no holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Indexed by `Weekday::num_days_from_monday`.
    weekend: [bool; 7],
    holidays: BTreeMap<NaiveDate, String>,
    days_off: BTreeMap<NaiveDate, String>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            weekend: [false, false, false, false, false, true, true],
            holidays: BTreeMap::new(),
            days_off: BTreeMap::new(),
        }
    }
}

impl Calendar {
    /// `weekend` days, national `holidays` and office `days_off` (date → name). At least one
    /// weekday must be a working day, so that every deadline exists.
    pub fn new(
        weekend: impl IntoIterator<Item = Weekday>,
        holidays: BTreeMap<NaiveDate, String>,
        days_off: BTreeMap<NaiveDate, String>,
    ) -> Result<Self, CalendarError> {
        let mut days = [false; 7];
        for day in weekend {
            if let Some(slot) = days.get_mut(day.num_days_from_monday() as usize) {
                *slot = true;
            }
        }
        if days.iter().all(|off| *off) {
            return Err(CalendarError::NoWorkingDay);
        }
        Ok(Self {
            weekend: days,
            holidays,
            days_off,
        })
    }

    pub fn is_weekend(&self, day: NaiveDate) -> bool {
        self.weekend
            .get(day.weekday().num_days_from_monday() as usize)
            .copied()
            .unwrap_or(false)
    }

    /// Not a weekend day, a holiday or an office day off.
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        !self.is_weekend(day)
            && !self.holidays.contains_key(&day)
            && !self.days_off.contains_key(&day)
    }

    /// Why `day` is not a working day: the holiday's or day off's name, or `None` (a working
    /// day, or a plain weekend day).
    pub fn closed_for(&self, day: NaiveDate) -> Option<&str> {
        self.holidays
            .get(&day)
            .or_else(|| self.days_off.get(&day))
            .map(String::as_str)
    }

    /// The day a step is due: `days` working days after `from`, the day the application entered
    /// the step (which does not count, working day or not). `days = 0` is `from` itself.
    pub fn add_working_days(&self, from: NaiveDate, days: u32) -> NaiveDate {
        let mut day = from;
        let mut left = days;
        // INVARIANT: terminates — the weekend leaves at least one weekday working (checked by
        // `new`) and holidays are finitely many.
        while left > 0 {
            let Some(next) = day.succ_opt() else {
                return day;
            };
            day = next;
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// The weekend days, Monday first.
    pub fn weekend(&self) -> Vec<Weekday> {
        WEEKDAYS
            .iter()
            .map(|(_, d)| *d)
            .filter(|d| {
                self.weekend
                    .get(d.num_days_from_monday() as usize)
                    .copied()
                    .unwrap_or(false)
            })
            .collect()
    }

    pub fn holidays(&self) -> &BTreeMap<NaiveDate, String> {
        &self.holidays
    }

    pub fn days_off(&self) -> &BTreeMap<NaiveDate, String> {
        &self.days_off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_default_calendar_skips_weekends() {
        let c = Calendar::default();
        // Thursday 2026-01-08 + 1 = Friday; + 2 = Monday; + 5 = the next Thursday.
        assert_eq!(c.add_working_days(d("2026-01-08"), 1), d("2026-01-09"));
        assert_eq!(c.add_working_days(d("2026-01-08"), 2), d("2026-01-12"));
        assert_eq!(c.add_working_days(d("2026-01-08"), 5), d("2026-01-15"));
        // Entered on a Saturday: the first working day after it is Monday.
        assert_eq!(c.add_working_days(d("2026-01-10"), 1), d("2026-01-12"));
        assert_eq!(c.add_working_days(d("2026-01-10"), 0), d("2026-01-10"));
        assert!(!c.is_working_day(d("2026-01-10")));
        assert!(c.is_working_day(d("2026-01-01")));
    }

    #[test]
    fn holidays_and_days_off_are_skipped() {
        let c = Calendar::new(
            [Weekday::Sat, Weekday::Sun],
            [(d("2026-03-20"), "Idul Fitri".to_owned())]
                .into_iter()
                .collect(),
            [(d("2026-03-19"), "Cuti bersama".to_owned())]
                .into_iter()
                .collect(),
        )
        .unwrap();
        // Wednesday 18 March + 1: Thursday (day off) and Friday (holiday) are skipped, then
        // the weekend: Monday 23 March.
        assert_eq!(c.add_working_days(d("2026-03-18"), 1), d("2026-03-23"));
        assert_eq!(c.add_working_days(d("2026-03-18"), 2), d("2026-03-24"));
        assert_eq!(c.closed_for(d("2026-03-19")), Some("Cuti bersama"));
        assert_eq!(c.closed_for(d("2026-03-20")), Some("Idul Fitri"));
        assert!(c.is_working_day(d("2026-03-18")));
    }

    #[test]
    fn an_office_with_a_friday_weekend_counts_saturday() {
        let c = Calendar::new([Weekday::Fri], BTreeMap::new(), BTreeMap::new()).unwrap();
        assert_eq!(c.add_working_days(d("2026-01-08"), 1), d("2026-01-10"));
        assert_eq!(c.weekend(), [Weekday::Fri]);
        assert_eq!(weekday("Sunday"), Some(Weekday::Sun));
        assert_eq!(weekday("minggu"), None);
    }

    #[test]
    fn a_week_without_working_days_is_refused() {
        let all = WEEKDAYS.iter().map(|(_, d)| *d);
        assert_eq!(
            Calendar::new(all, BTreeMap::new(), BTreeMap::new()),
            Err(CalendarError::NoWorkingDay)
        );
    }
}
