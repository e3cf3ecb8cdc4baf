//! Amounts of money: integer euro cents, never floats. Parsing and printing for people.

use std::fmt;

/// An amount in euro cents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(pub i64);

/// The largest amount schein accepts anywhere: EUR 10 million. Larger numbers are typos.
pub const MAX_CENTS: i64 = 1_000_000_000;

impl Cents {
    /// Parses euros as people write them: `500`, `500.5`, `500,50`, `1234.56`. At most two
    /// decimals, no sign, at most [`MAX_CENTS`].
    pub fn parse_euros(text: &str) -> Result<Self, MoneyError> {
        let text = text
            .trim()
            .trim_start_matches('€')
            .trim_end_matches("EUR")
            .trim();
        let err = || MoneyError(text.to_owned());
        let (whole, fraction) = match text.split_once(['.', ',']) {
            Some((_, "")) => return Err(err()),
            Some((whole, fraction)) => (whole, fraction),
            None => (text, ""),
        };
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 2
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let whole: i64 = whole.parse().map_err(|_| err())?;
        let fraction: i64 = match fraction.len() {
            0 => 0,
            1 => fraction.parse::<i64>().map_err(|_| err())? * 10,
            _ => fraction.parse().map_err(|_| err())?,
        };
        let cents = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(fraction))
            .filter(|c| *c <= MAX_CENTS)
            .ok_or_else(err)?;
        Ok(Self(cents))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "EUR {sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// An amount that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not an amount in euros (examples: 500, 120.50)")]
pub struct MoneyError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_type() {
        let cases = [
            ("500", 50_000),
            ("500.5", 50_050),
            ("500,50", 50_050),
            ("0.07", 7),
            ("€ 12", 1_200),
            ("12 EUR", 1_200),
        ];
        for (text, cents) in cases {
            assert_eq!(Cents::parse_euros(text).unwrap(), Cents(cents), "{text}");
        }
    }

    #[test]
    fn refuses_the_rest() {
        for text in [
            "",
            "-5",
            "1.234",
            "1e3",
            "abc",
            "12.",
            "99999999999999999999",
            "10000001",
        ] {
            assert!(Cents::parse_euros(text).is_err(), "{text}");
        }
    }

    #[test]
    fn prints_euros() {
        assert_eq!(Cents(50_000).to_string(), "EUR 500.00");
        assert_eq!(Cents(-7).to_string(), "EUR -0.07");
    }
}
