//! Calendar arithmetic for timestamps, pure so that it is tested on the build machine.
//!
//! Outside systems want local office time as text (OSS RBA: `YYYY-MM-DD HH:MM:SS` in WIB, and a
//! `Ymd` date inside its `Token`), while the host hands out UTC milliseconds plus the office's
//! offset. A connector has no time zone database and needs none: the offset is all there is.

/// A calendar date and a time of day, in the office's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl LocalTime {
    /// The local time `utc_offset_minutes` east of UTC at `unix_millis` (milliseconds since the
    /// Unix epoch, UTC). Negative times count back from 1970, as the proleptic Gregorian
    /// calendar does.
    pub fn from_unix_millis(unix_millis: i64, utc_offset_minutes: i32) -> LocalTime {
        let local_secs = unix_millis
            .div_euclid(1000)
            .saturating_add(i64::from(utc_offset_minutes) * 60);
        let days = local_secs.div_euclid(86_400);
        let secs_of_day = local_secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        LocalTime {
            year,
            month,
            day,
            // secs_of_day < 86 400, so these fit.
            hour: (secs_of_day / 3600) as u32,
            minute: (secs_of_day % 3600 / 60) as u32,
            second: (secs_of_day % 60) as u32,
        }
    }

    /// `YYYY-MM-DD HH:MM:SS`, the format OSS RBA and SIMBG use for dates with a time.
    pub fn datetime(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYYYMMDD` (PHP's `Ymd`), as in OSS RBA's `Token`.
    pub fn ymd(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

/// Year, month (1–12) and day (1–31) of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for every `i64` day that fits a year in `i64`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIB: i32 = 7 * 60;

    #[test]
    fn the_epoch_is_seven_in_the_morning_in_jakarta() {
        let t = LocalTime::from_unix_millis(0, WIB);
        assert_eq!(t.datetime(), "1970-01-01 07:00:00");
        assert_eq!(
            LocalTime::from_unix_millis(0, 0).datetime(),
            "1970-01-01 00:00:00"
        );
    }

    #[test]
    fn the_office_offset_moves_the_date_across_midnight() {
        // 2026-11-30T17:30:05Z is already 1 December in WIB (UTC+7).
        let millis = 1_796_059_805_000;
        assert_eq!(
            LocalTime::from_unix_millis(millis, 0).datetime(),
            "2026-11-30 17:30:05"
        );
        let wib = LocalTime::from_unix_millis(millis, WIB);
        assert_eq!(wib.datetime(), "2026-12-01 00:30:05");
        assert_eq!(wib.ymd(), "20261201");
        assert_eq!(wib.date(), "2026-12-01");
        // WIT (UTC+9) and a western offset.
        assert_eq!(
            LocalTime::from_unix_millis(millis, 9 * 60).datetime(),
            "2026-12-01 02:30:05"
        );
        assert_eq!(
            LocalTime::from_unix_millis(millis, -150).datetime(),
            "2026-11-30 15:00:05"
        );
    }

    #[test]
    fn leap_days_and_year_ends_are_exact() {
        // 2024-02-29T12:00:00Z
        assert_eq!(
            LocalTime::from_unix_millis(1_709_208_000_000, 0).datetime(),
            "2024-02-29 12:00:00"
        );
        // 2000-12-31T23:59:59.999Z: milliseconds are dropped, not rounded up.
        assert_eq!(
            LocalTime::from_unix_millis(978_307_199_999, 0).datetime(),
            "2000-12-31 23:59:59"
        );
        // 2100 is not a leap year: 2100-02-28 is followed by 1 March.
        assert_eq!(
            LocalTime::from_unix_millis(4_107_542_400_000, 0).date(),
            "2100-03-01"
        );
    }

    #[test]
    fn times_before_1970_count_back() {
        assert_eq!(
            LocalTime::from_unix_millis(-1, 0).datetime(),
            "1969-12-31 23:59:59"
        );
        assert_eq!(
            LocalTime::from_unix_millis(-86_400_000 * 365, 0).date(),
            "1969-01-01"
        );
    }
}
