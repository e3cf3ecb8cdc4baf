//! Disclosure control for aggregate tables (privacy rule 4): a cell built from fewer than
//! [`MIN_VOUCHERS`] vouchers is suppressed together with its amount (primary suppression), and
//! further cells are suppressed until no hidden cell can be recomputed from the published cells
//! and row or column totals (secondary suppression).
//!
//! The guarantee is the one an attacker with the published table can check by solving row and
//! column sums one unknown at a time: that recovers no hidden cell ([`recoverable`] is that
//! audit; `suppress` runs it until it finds nothing). Each row and column with a hidden cell has
//! at least two; a row or column whose only candidates are empty cells hides its total instead.
//! For one-column tables, which is what reports use, this is exact. For larger tables,
//! combinations of several rows and columns can reveal more than one-at-a-time elimination
//! finds (a rank test would be exact); do not rely on it there without one.

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
}

/// A table with row and column totals. Totals are computed from all cells, hidden or not, and
/// may themselves be hidden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub cells: Vec<Vec<Cell>>,
    pub row_totals: Vec<Cell>,
    pub column_totals: Vec<Cell>,
    pub total: Cell,
}

impl Table {
    /// A table of `cells` (rows of equal length), with totals filled in. Voucher counts of a
    /// total are the sums of its cells', given as `row_vouchers` etc. when a voucher can count
    /// in several cells of a row (the distinct count is smaller than the sum).
    pub fn new(
        cells: Vec<Vec<Cell>>,
        row_vouchers: Vec<u64>,
        column_vouchers: Vec<u64>,
        total_vouchers: u64,
    ) -> Self {
        let columns = cells.first().map_or(0, Vec::len);
        let row_totals = cells
            .iter()
            .zip(&row_vouchers)
            .map(|(row, &v)| Cell::new(v, row.iter().map(|c| c.amount_cents).sum()))
            .collect();
        let column_totals = (0..columns)
            .map(|c| {
                Cell::new(
                    column_vouchers.get(c).copied().unwrap_or(0),
                    cells.iter().map(|row| row[c].amount_cents).sum(),
                )
            })
            .collect();
        let total = Cell::new(
            total_vouchers,
            cells.iter().flatten().map(|c| c.amount_cents).sum(),
        );
        Self {
            cells,
            row_totals,
            column_totals,
            total,
        }
    }

    /// A table whose totals count vouchers as the sum of the cells' (each voucher in one cell).
    pub fn from_cells(cells: Vec<Vec<Cell>>) -> Self {
        let columns = cells.first().map_or(0, Vec::len);
        let rows: Vec<u64> = cells
            .iter()
            .map(|r| r.iter().map(|c| c.vouchers).sum())
            .collect();
        let cols: Vec<u64> = (0..columns)
            .map(|c| cells.iter().map(|r| r[c].vouchers).sum())
            .collect();
        let total = rows.iter().sum();
        Self::new(cells, rows, cols, total)
    }

    fn columns(&self) -> usize {
        self.column_totals.len()
    }

    /// Applies primary and secondary suppression, keeping what is hidden already.
    pub fn suppress(&mut self) {
        // Cells hidden beforehand (because they are hidden elsewhere) stay hidden.
        for cell in self.cells.iter_mut().flatten() {
            cell.hidden |= cell.sensitive();
        }
        for total in self.row_totals.iter_mut().chain(&mut self.column_totals) {
            total.hidden |= total.sensitive();
        }
        self.total.hidden |= self.total.sensitive();
        // Each round hides at least one more cell or total, so this ends (at worst with
        // everything hidden, from which nothing can be derived).
        loop {
            while self.secondary_pass() {}
            let Some(&(r, c)) = recoverable(self).first() else {
                break;
            };
            self.hide_more_around(r, c);
        }
    }

    /// A hidden cell (or total, with `usize::MAX` for the other index) can still be derived:
    /// hide the cheapest visible cell that shares a row or column with it, else a total.
    fn hide_more_around(&mut self, r: usize, c: usize) {
        if r != usize::MAX
            && let Some(col) = smallest_visible(self.cells[r].iter().copied().enumerate())
        {
            self.cells[r][col].hidden = true;
            return;
        }
        if c != usize::MAX
            && let Some(row) = smallest_visible(self.cells.iter().map(|row| row[c]).enumerate())
        {
            self.cells[row][c].hidden = true;
            return;
        }
        let totals = self
            .row_totals
            .iter_mut()
            .chain(&mut self.column_totals)
            .chain(std::iter::once(&mut self.total));
        for total in totals {
            if !total.hidden {
                total.hidden = true;
                return;
            }
        }
        // Everything else is hidden: hide the first visible cell.
        if let Some(cell) = self.cells.iter_mut().flatten().find(|c| !c.hidden) {
            cell.hidden = true;
        }
    }

    /// Hides one more cell (or total) in the first row or column that has exactly one hidden
    /// cell and a published total. Returns whether it hid anything.
    fn secondary_pass(&mut self) -> bool {
        for r in 0..self.cells.len() {
            let hidden = self.cells[r].iter().filter(|c| c.hidden).count();
            if hidden == 1 && !self.row_totals[r].hidden {
                let candidates: Vec<usize> = (0..self.columns()).collect();
                match smallest_visible(candidates.iter().map(|&c| (c, self.cells[r][c]))) {
                    Some(c) => self.cells[r][c].hidden = true,
                    None => self.row_totals[r].hidden = true,
                }
                return true;
            }
        }
        for c in 0..self.columns() {
            let hidden = self.cells.iter().filter(|row| row[c].hidden).count();
            if hidden == 1 && !self.column_totals[c].hidden {
                match smallest_visible((0..self.cells.len()).map(|r| (r, self.cells[r][c]))) {
                    Some(r) => self.cells[r][c].hidden = true,
                    None => self.column_totals[c].hidden = true,
                }
                return true;
            }
        }
        // The same for the totals: a hidden row total next to the published grand total.
        for totals in [&mut self.row_totals, &mut self.column_totals] {
            let hidden = totals.iter().filter(|t| t.hidden).count();
            if hidden == 1 && !self.total.hidden {
                match smallest_visible(totals.iter().copied().enumerate()) {
                    Some(i) => totals[i].hidden = true,
                    None => self.total.hidden = true,
                }
                return true;
            }
        }
        false
    }
}

/// The visible, non-empty cell with the fewest vouchers: the cheapest complement.
fn smallest_visible(cells: impl Iterator<Item = (usize, Cell)>) -> Option<usize> {
    cells
        .filter(|(_, c)| !c.hidden && c.vouchers > 0)
        .min_by_key(|(_, c)| (c.vouchers, c.amount_cents))
        .map(|(i, _)| i)
}

/// The audit: which hidden cells an attacker recovers by solving row, column and grand totals
/// one unknown at a time (amounts; voucher counts alike). Empty after [`Table::suppress`].
pub fn recoverable(table: &Table) -> Vec<(usize, usize)> {
    let rows = table.cells.len();
    let columns = table.column_totals.len();
    let mut known: Vec<Vec<bool>> = table
        .cells
        .iter()
        .map(|r| r.iter().map(|c| !c.hidden).collect())
        .collect();
    let mut row_known: Vec<bool> = table.row_totals.iter().map(|t| !t.hidden).collect();
    let mut column_known: Vec<bool> = table.column_totals.iter().map(|t| !t.hidden).collect();
    let total_known = !table.total.hidden;
    loop {
        let mut progress = false;
        // A total with all its parts known becomes known; a total with one unknown part reveals it.
        for r in 0..rows {
            let unknown: Vec<usize> = (0..columns).filter(|&c| !known[r][c]).collect();
            match (row_known[r], unknown.len()) {
                (true, 1) => {
                    known[r][unknown[0]] = true;
                    progress = true;
                }
                (false, 0) => {
                    row_known[r] = true;
                    progress = true;
                }
                _ => {}
            }
        }
        for c in 0..columns {
            let unknown: Vec<usize> = (0..rows).filter(|&r| !known[r][c]).collect();
            match (column_known[c], unknown.len()) {
                (true, 1) => {
                    known[unknown[0]][c] = true;
                    progress = true;
                }
                (false, 0) => {
                    column_known[c] = true;
                    progress = true;
                }
                _ => {}
            }
        }
        for totals in [&mut row_known, &mut column_known] {
            let unknown: Vec<usize> = (0..totals.len()).filter(|&i| !totals[i]).collect();
            if total_known && unknown.len() == 1 {
                totals[unknown[0]] = true;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    let mut found: Vec<(usize, usize)> = table
        .cells
        .iter()
        .zip(&known)
        .enumerate()
        .flat_map(|(r, (cells, known))| {
            cells
                .iter()
                .zip(known)
                .enumerate()
                .filter(|(_, (cell, known))| cell.sensitive() && **known)
                .map(move |(c, _)| (r, c))
        })
        .collect();
    // A sensitive total that became known is a disclosure as well.
    for (r, known) in row_known.iter().enumerate() {
        if *known && table.row_totals[r].sensitive() {
            found.push((r, usize::MAX));
        }
    }
    for (c, known) in column_known.iter().enumerate() {
        if *known && table.column_totals[c].sensitive() {
            found.push((usize::MAX, c));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn table(counts: &[&[u64]]) -> Table {
        Table::from_cells(
            counts
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|&v| Cell::new(v, v as i64 * 10_000))
                        .collect()
                })
                .collect(),
        )
    }

    #[test]
    fn a_single_small_cell_takes_a_partner_in_its_row_and_column() {
        let mut t = table(&[&[20, 3, 30], &[40, 50, 60]]);
        t.suppress();
        assert!(t.cells[0][1].hidden, "primary");
        assert!(t.cells[0].iter().filter(|c| c.hidden).count() >= 2);
        assert!(t.cells.iter().filter(|r| r[1].hidden).count() >= 2);
        assert!(recoverable(&t).is_empty());
        assert!(!t.total.hidden);
    }

    #[test]
    fn a_row_with_no_partner_hides_its_total() {
        let mut t = table(&[&[3, 0, 0], &[40, 50, 60]]);
        t.suppress();
        assert!(t.cells[0][0].hidden);
        assert!(recoverable(&t).is_empty());
    }

    #[test]
    fn nothing_small_nothing_hidden() {
        let mut t = table(&[&[20, 0, 30], &[40, 50, 60]]);
        t.suppress();
        assert!(t.cells.iter().flatten().all(|c| !c.hidden));
    }

    fn random_table() -> impl Strategy<Value = Table> {
        (1usize..6, 1usize..6).prop_flat_map(|(rows, columns)| {
            proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(0u64), 1u64..5, 5u64..40].prop_flat_map(|v| {
                        (
                            Just(v),
                            if v == 0 {
                                (0i64..1).boxed()
                            } else {
                                (1i64..1_000_000).boxed()
                            },
                        )
                    }),
                    columns,
                ),
                rows,
            )
            .prop_map(|rows| {
                Table::from_cells(
                    rows.into_iter()
                        .map(|r| r.into_iter().map(|(v, a)| Cell::new(v, a)).collect())
                        .collect(),
                )
            })
        })
    }

    proptest! {
        #[test]
        fn no_small_cell_can_be_read_or_derived(mut t in random_table()) {
            t.suppress();
            for cell in t.cells.iter().flatten() {
                prop_assert!(!cell.sensitive() || cell.hidden, "a small cell is published");
            }
            for total in t.row_totals.iter().chain(&t.column_totals) {
                prop_assert!(!total.sensitive() || total.hidden, "a small total is published");
            }
            prop_assert!(!t.total.sensitive() || t.total.hidden);
            prop_assert_eq!(recoverable(&t), Vec::<(usize, usize)>::new());
        }
    }
}
