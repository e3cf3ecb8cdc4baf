//! Reporting periods: a month (`2026-11`), a quarter (`2026-Q4`) or a year (`2026`).

use std::fmt;

use crate::Day;

/// A period of whole months.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Year(i32),
    Quarter(i32, u8),
    Month(i32, u8),
}

/// A period that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a period (examples: 2026-Q4, 2026-11, 2026)")]
pub struct PeriodError(String);

impl Period {
    pub fn parse(text: &str) -> Result<Self, PeriodError> {
        // Quoted back to whoever sent it, so never more than a period's length of it: the
        // message travels in a gRPC status header.
        let err = || {
            let mut quoted: String = text.chars().take(16).collect();
            if text.chars().nth(16).is_some() {
                quoted.push('…');
            }
            PeriodError(quoted)
        };
        let text = text.trim();
        let year_of = |y: &str| -> Result<i32, PeriodError> {
            y.parse::<i32>()
                .ok()
                .filter(|y| {
                    (2000..=2999).contains(y) && text.starts_with(|c: char| c.is_ascii_digit())
                })
                .ok_or_else(err)
        };
        match text.split_once('-') {
            None => Ok(Period::Year(year_of(text)?)),
            Some((y, rest)) => {
                let year = year_of(y)?;
                if let Some(q) = rest.strip_prefix(['Q', 'q']) {
                    let q: u8 = q
                        .parse()
                        .ok()
                        .filter(|q| (1..=4).contains(q))
                        .ok_or_else(err)?;
                    Ok(Period::Quarter(year, q))
                } else {
                    let m: u8 = rest
                        .parse()
                        .ok()
                        .filter(|m| (1..=12).contains(m) && rest.len() == 2)
                        .ok_or_else(err)?;
                    Ok(Period::Month(year, m))
                }
            }
        }
    }

    /// The periods a month (year * 100 + month) belongs to: its month, quarter and year.
    pub fn containing(month: i32) -> [Period; 3] {
        let year = month / 100;
        let m = (month % 100).clamp(1, 12) as u8;
        [
            Period::Month(year, m),
            Period::Quarter(year, (m - 1) / 3 + 1),
            Period::Year(year),
        ]
    }

    pub fn year(self) -> i32 {
        match self {
            Period::Year(y) | Period::Quarter(y, _) | Period::Month(y, _) => y,
        }
    }

    /// Whether the month (year * 100 + month) lies in this period.
    pub fn contains(self, month: i32) -> bool {
        Self::containing(month).contains(&self)
    }

    /// The four quarters of a year.
    pub fn quarters(year: i32) -> [Period; 4] {
        [1, 2, 3, 4].map(|q| Period::Quarter(year, q))
    }

    /// The months of the period in order, as year * 100 + month.
    pub fn months(self) -> Vec<i32> {
        let (year, first, last) = match self {
            Period::Year(y) => (y, 1, 12),
            Period::Quarter(y, q) => (y, (q - 1) * 3 + 1, q * 3),
            Period::Month(y, m) => (y, m, m),
        };
        (first..=last).map(|m| year * 100 + i32::from(m)).collect()
    }

    /// The first day of the period.
    pub fn first_day(self) -> Option<Day> {
        let first = *self.months().first()?;
        Day::first_of_month(first)
    }

    /// The last day of the period.
    pub fn last_day(self) -> Option<Day> {
        let last = *self.months().last()?;
        Day::first_of_month(last)?
            .add_months(1)?
            .checked_add_days(-1)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Year(y) => write!(f, "{y}"),
            Period::Quarter(y, q) => write!(f, "{y}-Q{q}"),
            Period::Month(y, m) => write!(f, "{y}-{m:02}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_print() {
        for text in ["2026-Q4", "2026-11", "2026", "2027-01"] {
            assert_eq!(Period::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Period::parse("2026-q1").unwrap(), Period::Quarter(2026, 1));
        for text in [
            "", "2026-Q5", "2026-13", "2026-1", "26", "-2026", "2026-", "Q4",
        ] {
            assert!(Period::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn months_belong_to_their_periods() {
        assert_eq!(
            Period::containing(202_611),
            [
                Period::Month(2026, 11),
                Period::Quarter(2026, 4),
                Period::Year(2026)
            ]
        );
        assert!(Period::Quarter(2026, 4).contains(202_610));
        assert!(!Period::Quarter(2026, 4).contains(202_609));
        assert!(Period::Year(2026).contains(202_601));
    }

    #[test]
    fn periods_know_their_days_and_months() {
        let q4 = Period::Quarter(2026, 4);
        assert_eq!(q4.months(), [202_610, 202_611, 202_612]);
        assert_eq!(q4.first_day(), Day::parse("2026-10-01").ok());
        assert_eq!(q4.last_day(), Day::parse("2026-12-31").ok());
        assert_eq!(
            Period::Month(2028, 2).last_day(),
            Day::parse("2028-02-29").ok()
        );
        assert_eq!(Period::Year(2027).months().len(), 12);
    }
}
