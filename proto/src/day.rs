//! Calendar days (UTC) as the protocol carries them: days since 1970-01-01. Vouchers are valid
//! for whole days, and the default validity ends with the current quarter.

use std::fmt;

use time::{Date, Duration, Month, OffsetDateTime};

use crate::v1;

/// A calendar day in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i32);

/// The Unix epoch as a Julian day number, to convert without going through timestamps.
const EPOCH_JULIAN_DAY: i32 = 2_440_588;

impl Day {
    pub const fn from_days_since_epoch(days: i32) -> Self {
        Self(days)
    }

    pub const fn days_since_epoch(self) -> i32 {
        self.0
    }

    /// Today in UTC, by this machine's clock.
    pub fn today() -> Self {
        Self::from_date(OffsetDateTime::now_utc().date())
    }

    /// The UTC day of a moment given in seconds since the Unix epoch.
    pub fn of_unix_seconds(seconds: i64) -> Self {
        Self(seconds.div_euclid(86_400) as i32)
    }

    pub fn from_date(date: Date) -> Self {
        Self(date.to_julian_day() - EPOCH_JULIAN_DAY)
    }

    /// The date, or `None` if the day lies outside the years the `time` crate can represent.
    pub fn to_date(self) -> Option<Date> {
        Date::from_julian_day(self.0.checked_add(EPOCH_JULIAN_DAY)?).ok()
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Self, DayError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(text.trim(), format)
            .map(Self::from_date)
            .map_err(|_| DayError(text.to_owned()))
    }

    pub fn checked_add_days(self, days: i32) -> Option<Self> {
        self.0.checked_add(days).map(Self)
    }

    /// The month this day lies in, as year * 100 + month (e.g. 202611).
    pub fn month(self) -> Option<i32> {
        let date = self.to_date()?;
        Some(date.year() * 100 + i32::from(u8::from(date.month())))
    }

    /// The first day of a month given as year * 100 + month.
    pub fn first_of_month(month: i32) -> Option<Self> {
        let m = Month::try_from(u8::try_from(month % 100).ok()?).ok()?;
        Date::from_calendar_date(month / 100, m, 1)
            .ok()
            .map(Self::from_date)
    }

    /// The same day `months` later, or the last day of that month if it is shorter.
    pub fn add_months(self, months: u32) -> Option<Self> {
        let date = self.to_date()?;
        let index =
            i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + i64::from(months);
        let year = i32::try_from(index.div_euclid(12)).ok()?;
        let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
        let last = time::util::days_in_month(month, year);
        Date::from_calendar_date(year, month, date.day().min(last))
            .ok()
            .map(Self::from_date)
    }

    /// The last day of the quarter this day lies in.
    pub fn end_of_quarter(self) -> Option<Self> {
        let date = self.to_date()?;
        let last_month = (u8::from(date.month()) - 1) / 3 * 3 + 3;
        let month = Month::try_from(last_month).ok()?;
        let first_of_last = Date::from_calendar_date(date.year(), month, 1).ok()?;
        let next_month = first_of_last.checked_add(Duration::days(31))?;
        let first_of_next = next_month.replace_day(1).ok()?;
        Some(Self::from_date(first_of_next.previous_day()?))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_date() {
            Some(date) => write!(
                f,
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
            None => write!(f, "day {}", self.0),
        }
    }
}

impl From<Day> for v1::Day {
    fn from(day: Day) -> Self {
        v1::Day { days: day.0 }
    }
}

impl From<v1::Day> for Day {
    fn from(day: v1::Day) -> Self {
        Self(day.days)
    }
}

/// A day that could not be read as `YYYY-MM-DD`.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a date of the form YYYY-MM-DD")]
pub struct DayError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_ends() {
        let cases = [
            ("2026-01-01", "2026-03-31"),
            ("2026-03-31", "2026-03-31"),
            ("2026-04-01", "2026-06-30"),
            ("2026-08-15", "2026-09-30"),
            ("2026-11-26", "2026-12-31"),
            ("2028-02-29", "2028-03-31"),
        ];
        for (day, end) in cases {
            let day = Day::parse(day).unwrap();
            assert_eq!(day.end_of_quarter().unwrap().to_string(), end);
        }
    }

    #[test]
    fn round_trips_through_text() {
        let day = Day::parse("2026-11-26").unwrap();
        assert_eq!(day.to_string(), "2026-11-26");
        assert_eq!(Day::parse("1970-01-01").unwrap().days_since_epoch(), 0);
        assert_eq!(Day::of_unix_seconds(86_400 * 3 + 5), Day(3));
        assert_eq!(Day::of_unix_seconds(-1), Day(-1));
    }

    #[test]
    fn months_and_deadlines() {
        let day = |t: &str| Day::parse(t).unwrap();
        assert_eq!(day("2026-11-26").month(), Some(202_611));
        assert_eq!(day("2026-12-31").add_months(3), Some(day("2027-03-31")));
        assert_eq!(day("2026-11-30").add_months(3), Some(day("2027-02-28")));
        assert_eq!(day("2027-11-30").add_months(3), Some(day("2028-02-29")));
        assert_eq!(day("2026-01-15").add_months(0), Some(day("2026-01-15")));
    }

    #[test]
    fn rejects_malformed_dates() {
        for text in ["", "2026-13-01", "2026-02-30", "26-1-1", "tomorrow"] {
            assert!(Day::parse(text).is_err(), "{text}");
        }
    }
}
