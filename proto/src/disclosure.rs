//! Disclosure control for reports (privacy rule 4): a cell built from fewer than
//! [`MIN_VOUCHERS`] vouchers is suppressed together with its amount (primary suppression), and
//! further cells are suppressed until no suppressed cell can be computed from what is published
//! (secondary suppression).
//!
//! A report's settled claims form a [`Breakdown`]: a total and groups of parts (by category, by
//! redeeming city), each group adding up to the total in claims and in amount. Whoever reads the
//! report can solve those equations: with the total published, the hidden parts of a group add
//! up to the total minus its published parts; with the total hidden, the two groups still give
//! "hidden categories − hidden cities = a published number". The rules below keep every
//! suppressed cell undetermined by those equations, and keep the attacker from proving that a
//! small cell is small (the largest value the equations allow it is at least [`MIN_VOUCHERS`]
//! claims, or unbounded):
//!
//! 1. With the total published, a group with a hidden non-empty part hides at least two parts,
//!    and one of them is built from at least [`MIN_VOUCHERS`] vouchers. Two small parts are not
//!    enough: their sum is published (medication and emergency from 2 vouchers, EUR 187.80,
//!    were once computed as "settled − treatment"), and distinct voucher counts do not add up
//!    (a voucher can count in treatment and in medication), so only a single part of at least
//!    [`MIN_VOUCHERS`] vouchers proves that the hidden sum comes from that many. Partners are
//!    the smallest published part that qualifies; if there is none, the total is hidden.
//! 2. With the total hidden (and not empty), every group hides a non-empty part; otherwise the
//!    total is the sum of that group's published parts.
//!
//! Reports apply these rules per period and hide a measure hidden in any period of a year in all
//! of them (`node/src/report.rs`); periods then add nothing an attacker could use, as every
//! period's sums hold between unknowns only. A property test in `node/tests/` attacks published
//! reports with exact linear algebra and linear programming, independently of this module.

/// Cells built from fewer vouchers than this are never published.
pub const MIN_VOUCHERS: u64 = 5;

/// One cell: how many distinct vouchers it is built from, and its amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub vouchers: u64,
    pub amount_cents: i64,
    pub hidden: bool,
}

impl Cell {
    pub fn new(vouchers: u64, amount_cents: i64) -> Self {
        Self {
            vouchers,
            amount_cents,
            hidden: false,
        }
    }

    /// Below the threshold but not empty: must never be published.
    pub fn sensitive(&self) -> bool {
        self.vouchers > 0 && self.vouchers < MIN_VOUCHERS
    }

    fn empty(&self) -> bool {
        self.vouchers == 0
    }
}

/// A total and groups of parts; the parts of each group add up to the total in claims and in
/// amount. Voucher counts do not add up: a voucher can count in several parts of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breakdown {
    pub total: Cell,
    pub groups: Vec<Vec<Cell>>,
}

/// What one group still needs.
enum Need {
    Nothing,
    Part(usize),
    Total,
}

impl Breakdown {
    /// Applies primary and secondary suppression, keeping what is hidden already (cells hidden
    /// because they are hidden in another period stay hidden).
    pub fn suppress(&mut self) {
        self.total.hidden |= self.total.sensitive();
        for part in self.groups.iter_mut().flatten() {
            part.hidden |= part.sensitive();
        }
        // Each round hides one more part or the total, so this ends.
        while self.hide_one_more() {}
    }

    fn hide_one_more(&mut self) -> bool {
        let total = self.total;
        for group in &mut self.groups {
            let need = if total.hidden {
                hidden_total_needs(group, total)
            } else {
                published_total_needs(group)
            };
            match need {
                Need::Nothing => {}
                Need::Part(i) => {
                    group[i].hidden = true;
                    return true;
                }
                Need::Total => {
                    self.total.hidden = true;
                    return true;
                }
            }
        }
        false
    }
}

/// Rule 1: the hidden parts of a group whose total is published add up to a published number.
fn published_total_needs(parts: &[Cell]) -> Need {
    if !parts.iter().any(|p| p.hidden && !p.empty()) {
        return Need::Nothing;
    }
    if !parts.iter().any(|p| p.hidden && p.vouchers >= MIN_VOUCHERS) {
        return smallest_published(parts, |p| p.vouchers >= MIN_VOUCHERS)
            .map_or(Need::Total, Need::Part);
    }
    if parts.iter().filter(|p| p.hidden).count() < 2 {
        // The one hidden part is not small, but it is hidden because it is elsewhere, and it
        // would be the total minus the rest. An empty partner will do: a reader cannot tell it
        // from a full one.
        return smallest_published(parts, |p| !p.empty())
            .or_else(|| smallest_published(parts, |_| true))
            .map_or(Need::Total, Need::Part);
    }
    Need::Nothing
}

/// Rule 2: a hidden total is the sum of any group whose non-empty parts are all published.
fn hidden_total_needs(parts: &[Cell], total: Cell) -> Need {
    if total.empty() || parts.iter().any(|p| p.hidden && !p.empty()) {
        return Need::Nothing;
    }
    smallest_published(parts, |p| !p.empty()).map_or(Need::Nothing, Need::Part)
}

/// The published part with the fewest vouchers among those that `qualify`: the cheapest
/// partner.
fn smallest_published(parts: &[Cell], qualify: impl Fn(&Cell) -> bool) -> Option<usize> {
    parts
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.hidden && qualify(p))
        .min_by_key(|(_, p)| (p.vouchers, p.amount_cents))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(vouchers: u64, amount_cents: i64) -> Cell {
        Cell::new(vouchers, amount_cents)
    }

    fn hidden(cells: &[Cell]) -> Vec<bool> {
        cells.iter().map(|c| c.hidden).collect()
    }

    /// The case from use: treatment 10 vouchers, medication and emergency one each. Hiding the
    /// two small cells alone publishes their sum as "settled − treatment".
    #[test]
    fn two_small_parts_take_a_large_partner() {
        let mut b = Breakdown {
            total: cell(12, 120_000 + 18_780),
            groups: vec![vec![cell(10, 120_000), cell(1, 10_000), cell(1, 8_780)]],
        };
        b.suppress();
        assert!(!b.total.hidden);
        assert_eq!(hidden(&b.groups[0]), [true, true, true]);
    }

    #[test]
    fn the_partner_is_the_smallest_part_of_five_vouchers() {
        let mut b = Breakdown {
            total: cell(40, 40_000),
            groups: vec![vec![
                cell(20, 20_000),
                cell(3, 3_000),
                cell(6, 6_000),
                cell(11, 11_000),
            ]],
        };
        b.suppress();
        assert_eq!(hidden(&b.groups[0]), [false, true, true, false]);
    }

    #[test]
    fn a_small_part_without_a_partner_hides_the_total_and_the_other_group_follows() {
        // Every claim in one city, a small one in medication: no category of 5 vouchers can
        // partner it except treatment, which is the only other part.
        let mut b = Breakdown {
            total: cell(6, 6_000),
            groups: vec![
                vec![cell(4, 4_000), cell(2, 2_000), cell(0, 0)],
                vec![cell(6, 6_000), cell(0, 0)],
            ],
        };
        b.suppress();
        assert!(b.total.hidden);
        assert_eq!(hidden(&b.groups[0]), [true, true, false]);
        // The city group would give the total away: its one non-empty part goes too.
        assert_eq!(hidden(&b.groups[1]), [true, false]);
    }

    #[test]
    fn a_part_hidden_elsewhere_is_not_the_only_hidden_part() {
        let mut b = Breakdown {
            total: cell(30, 30_000),
            groups: vec![vec![cell(20, 20_000), cell(10, 10_000), cell(0, 0)]],
        };
        b.groups[0][1].hidden = true;
        b.suppress();
        assert!(!b.total.hidden);
        assert_eq!(hidden(&b.groups[0]), [true, true, false]);
    }

    #[test]
    fn nothing_small_nothing_hidden() {
        let mut b = Breakdown {
            total: cell(30, 30_000),
            groups: vec![
                vec![cell(20, 20_000), cell(10, 10_000), cell(0, 0)],
                vec![cell(25, 25_000), cell(5, 5_000)],
            ],
        };
        let before = b.clone();
        b.suppress();
        assert_eq!(b, before);
    }
}
