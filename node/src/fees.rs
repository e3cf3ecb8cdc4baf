//! The fee schedule: the issuing office's list of what it pays for, published with its member
//! entry. A redeeming node checks a provider's bill against the issuer's schedule, and sends the
//! issuer only the total (privacy rule 3).

use std::collections::BTreeMap;

use schein_proto::money::{Cents, MAX_CENTS};
use schein_proto::v1::ClaimItem;
use serde::{Deserialize, Serialize};

/// Most items on one bill, and most units of one item.
pub const MAX_ITEMS: usize = 50;
pub const MAX_COUNT: u32 = 99;

/// Whether a catalogue's items are treatment (under the voucher's cap) or medication (outside).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogueCategory {
    #[default]
    Treatment,
    Medication,
}

/// One catalogue (GOÄ, GOZ, …): fee codes with their base amount, and a factor for all of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub name: String,
    /// What its items are billed as; a claim's category must match every item's.
    #[serde(default)]
    pub category: CatalogueCategory,
    /// 100 = factor 1.0; the most the issuer pays is base × factor.
    pub factor_percent: u32,
    /// Fee code → base amount of one unit, euro cents.
    pub items: BTreeMap<String, i64>,
}

/// An issuer's fee schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    #[serde(rename = "catalogue")]
    pub catalogues: Vec<Catalogue>,
}

/// Why a bill does not fit the schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("a claim needs 1 to {MAX_ITEMS} items")]
    ItemCount,
    #[error("fee code '{0}' is not in the issuing office's fee schedule")]
    UnknownCode(String),
    #[error("item {0}: the count must be 1 to {MAX_COUNT}")]
    Count(String),
    #[error("item {0}: the amount must be more than zero")]
    Amount(String),
    #[error("item {code}: {claimed} is more than the fee schedule allows ({allowed})")]
    TooMuch {
        code: String,
        claimed: Cents,
        allowed: Cents,
    },
    #[error("the claim's total is absurdly high")]
    Total,
    #[error(
        "item {0} cannot be billed in this category (treatment and medication are billed separately)"
    )]
    Category(String),
}

impl FeeSchedule {
    /// The schedule `init` publishes, from `fees/default.toml`.
    pub fn builtin() -> Self {
        toml::from_str(include_str!("fees/default.toml")).unwrap_or(Self { catalogues: vec![] })
    }

    /// Checks the schedule itself: codes unique, amounts and factors sane.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for catalogue in &self.catalogues {
            if !(1..=1000).contains(&catalogue.factor_percent) {
                return Err(format!(
                    "catalogue '{}': factor_percent must be 1 to 1000",
                    catalogue.name
                ));
            }
            for (code, &cents) in &catalogue.items {
                if code.is_empty() || code.len() > 32 || code.chars().any(char::is_whitespace) {
                    return Err(format!("fee code '{code}' is not a code"));
                }
                if !(1..=MAX_CENTS).contains(&cents) {
                    return Err(format!("fee code '{code}': amount out of range"));
                }
                if !seen.insert(code.as_str()) {
                    return Err(format!("fee code '{code}' appears twice"));
                }
            }
        }
        Ok(())
    }

    /// The most the issuer pays for one unit of `code`, and what `code` is billed as.
    pub fn max_unit_cents(&self, code: &str) -> Option<(i64, CatalogueCategory)> {
        self.catalogues.iter().find_map(|c| {
            c.items.get(code).map(|&base| {
                (
                    base.saturating_mul(i64::from(c.factor_percent)) / 100,
                    c.category,
                )
            })
        })
    }

    /// Checks every item of a bill in `category` and returns its total.
    pub fn check(&self, items: &[ClaimItem], category: CatalogueCategory) -> Result<i64, FeeError> {
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(FeeError::ItemCount);
        }
        let mut total: i64 = 0;
        for item in items {
            let code = &item.fee_code;
            let (unit, item_category) = self
                .max_unit_cents(code)
                .ok_or_else(|| FeeError::UnknownCode(code.chars().take(32).collect()))?;
            if item_category != category {
                return Err(FeeError::Category(code.clone()));
            }
            if !(1..=MAX_COUNT).contains(&item.count) {
                return Err(FeeError::Count(code.clone()));
            }
            if item.amount_cents <= 0 {
                return Err(FeeError::Amount(code.clone()));
            }
            let allowed = unit.saturating_mul(i64::from(item.count));
            if item.amount_cents > allowed {
                return Err(FeeError::TooMuch {
                    code: code.clone(),
                    claimed: Cents(item.amount_cents),
                    allowed: Cents(allowed),
                });
            }
            total = total
                .checked_add(item.amount_cents)
                .filter(|t| *t <= MAX_CENTS)
                .ok_or(FeeError::Total)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(code: &str, count: u32, cents: i64) -> ClaimItem {
        ClaimItem {
            fee_code: code.into(),
            count,
            amount_cents: cents,
        }
    }

    #[test]
    fn the_builtin_schedule_is_valid() {
        let schedule = FeeSchedule::builtin();
        assert!(schedule.catalogues.len() >= 4);
        schedule.validate().unwrap();
        assert_eq!(schedule.max_unit_cents("GOAE-1"), Some((466, T)));
        assert_eq!(
            schedule.max_unit_cents("GOZ-0010"),
            Some((1124, T)),
            "dental factor 2.0"
        );
        assert_eq!(
            schedule.max_unit_cents("MED").map(|(_, c)| c),
            Some(CatalogueCategory::Medication)
        );
    }

    const T: CatalogueCategory = CatalogueCategory::Treatment;

    #[test]
    fn bills_are_checked_item_by_item() {
        let schedule = FeeSchedule::builtin();
        assert!(matches!(
            schedule.check(&[item("MED", 1, 100)], T),
            Err(FeeError::Category(_))
        ));
        assert!(matches!(
            schedule.check(&[item("GOAE-1", 1, 100)], CatalogueCategory::Medication),
            Err(FeeError::Category(_))
        ));
        assert_eq!(
            schedule.check(&[item("GOAE-1", 1, 466), item("GOAE-5", 2, 900)], T),
            Ok(1366)
        );
        assert!(matches!(schedule.check(&[], T), Err(FeeError::ItemCount)));
        assert!(matches!(
            schedule.check(&[item("GOAE-9999", 1, 100)], T),
            Err(FeeError::UnknownCode(_))
        ));
        assert!(matches!(
            schedule.check(&[item("GOAE-1", 0, 100)], T),
            Err(FeeError::Count(_))
        ));
        assert!(matches!(
            schedule.check(&[item("GOAE-1", 100, 100)], T),
            Err(FeeError::Count(_))
        ));
        assert!(matches!(
            schedule.check(&[item("GOAE-1", 1, -5)], T),
            Err(FeeError::Amount(_))
        ));
        assert!(matches!(
            schedule.check(&[item("GOAE-1", 1, 467)], T),
            Err(FeeError::TooMuch { .. })
        ));
        let big = FeeSchedule {
            catalogues: vec![Catalogue {
                name: "test".into(),
                category: T,
                factor_percent: 100,
                items: [("BIG".to_owned(), MAX_CENTS)].into_iter().collect(),
            }],
        };
        big.validate().unwrap();
        assert_eq!(big.check(&[item("BIG", 1, MAX_CENTS)], T), Ok(MAX_CENTS));
        assert!(matches!(
            big.check(&[item("BIG", 1, MAX_CENTS), item("BIG", 1, 1)], T),
            Err(FeeError::Total)
        ));
    }
}
