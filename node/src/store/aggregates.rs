//! Aggregate counters, kept in the same transaction as the events they count, so that a report
//! reads a handful of cells whatever the number of records (O(cells), not O(records)).
//!
//! A cell is named `metric/period[/dimension]` and holds three numbers: events counted,
//! distinct vouchers, amount. Every event is counted in its month, quarter and year, so that
//! distinct voucher counts are exact for each period. Distinctness is kept in the voucher's own
//! state record (the cells it was counted in, as 64-bit name hashes), which the transaction
//! writes anyway; only events on serials this node never issued, which have no state record,
//! keep a marker per (cell, serial) in `aggregate_seen`. One marker key per cell and settlement
//! cost as much as the rest of the settlement's writes together.
//!
//! Funders see every cell as of the start of the current week (privacy rule 4: two reports
//! asked for a day apart must not show one claim appear). Each cell keeps, besides its numbers
//! now, its numbers at the start of the week of its last change; the first change in a later
//! week moves the numbers now there. A cell last changed before this week shows its numbers
//! now, any other its numbers at the start of this week: all cells of a report show the same
//! moment, so the sums between them hold in the released figures too.

use schein_proto::period::Period;
use schein_proto::{Day, Serial};
use sha2::Digest;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{Store, StoreError, corrupt};
use crate::domain::report::Measure;

/// The numbers of one cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub count: u64,
    pub vouchers: u64,
    pub amount_cents: i64,
}

impl Aggregate {
    fn decode(bytes: &[u8]) -> Self {
        let part = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            b
        };
        Self {
            count: u64::from_be_bytes(part(0)),
            vouchers: u64::from_be_bytes(part(1)),
            amount_cents: i64::from_be_bytes(part(2)),
        }
    }

    fn encode_into(self, bytes: &mut [u8]) {
        bytes[..8].copy_from_slice(&self.count.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.vouchers.to_be_bytes());
        bytes[16..24].copy_from_slice(&self.amount_cents.to_be_bytes());
    }
}

/// The week a day lies in, counted in whole weeks from the Monday before the epoch: weeks begin
/// on Monday 00:00 UTC, as ISO weeks do.
pub(super) fn week_of(day: Day) -> i64 {
    (i64::from(day.days_since_epoch()) + 3).div_euclid(7)
}

/// A cell as stored: its numbers now, and as they were at the start of the week of its last
/// change, so that a reader can be shown every cell as of the same moment (the start of the
/// current week) without a background job. 56 bytes; a cell of 24 bytes (a store from before
/// releases) holds only its numbers now and counts as last changed long ago.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StoredCell {
    now: Aggregate,
    at_start_of_week: Aggregate,
    week: i64,
}

impl StoredCell {
    const LEN: usize = 56;
    const OLD_LEN: usize = 24;
    /// A cell nothing was counted in.
    const EMPTY: Self = Self {
        now: Aggregate {
            count: 0,
            vouchers: 0,
            amount_cents: 0,
        },
        at_start_of_week: Aggregate {
            count: 0,
            vouchers: 0,
            amount_cents: 0,
        },
        week: i64::MIN,
    };

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.len() {
            Self::OLD_LEN => Ok(Self {
                now: Aggregate::decode(bytes),
                ..Self::EMPTY
            }),
            Self::LEN => {
                let mut week = [0u8; 8];
                week.copy_from_slice(&bytes[48..]);
                Ok(Self {
                    now: Aggregate::decode(&bytes[..24]),
                    at_start_of_week: Aggregate::decode(&bytes[24..48]),
                    week: i64::from_be_bytes(week),
                })
            }
            _ => Err(corrupt("aggregate cell")),
        }
    }

    fn encode(self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        self.now.encode_into(&mut bytes[..24]);
        self.at_start_of_week.encode_into(&mut bytes[24..48]);
        bytes[48..].copy_from_slice(&self.week.to_be_bytes());
        bytes
    }

    /// Before a change in `week`: if the cell last changed in an earlier week, its numbers now
    /// are its numbers at the start of this one.
    fn changing_in(&mut self, week: i64) {
        if self.week < week {
            self.at_start_of_week = self.now;
            self.week = week;
        }
    }

    /// The numbers at the start of `week`. A cell changed in a later week (the clock went back)
    /// shows its numbers at the start of that week, the closest it knows.
    fn at_start_of(&self, week: i64) -> Aggregate {
        if self.week < week {
            self.now
        } else {
            self.at_start_of_week
        }
    }
}

/// Where a voucher's "counted in this cell before" marks live.
pub(super) enum Counted<'a> {
    /// In the voucher's state record (its `counted_in`); the caller writes the record.
    InState(&'a mut Vec<u64>),
    /// In the `aggregate_seen` tree: for serials without a state record here.
    Unknown(&'a TransactionalTree, &'a Serial),
}

impl Counted<'_> {
    /// Marks the voucher as counted in `cell`; true if it was not before.
    fn first_time(&mut self, cell: &str) -> Result<bool, ConflictableTransactionError<StoreError>> {
        match self {
            Counted::InState(counted_in) => {
                let hash = cell_hash(cell);
                if counted_in.contains(&hash) {
                    return Ok(false);
                }
                counted_in.push(hash);
                Ok(true)
            }
            Counted::Unknown(seen, serial) => {
                let mut marker = cell.as_bytes().to_vec();
                marker.push(0);
                marker.extend_from_slice(serial.as_bytes());
                if seen.get(marker.as_slice())?.is_some() {
                    return Ok(false);
                }
                seen.insert(marker, &[][..])?;
                Ok(true)
            }
        }
    }
}

/// A cell name as 64 bits: the first 8 bytes of its SHA-256. The names of one voucher's cells
/// number in the tens, so a collision (one voucher not counted in a cell) is out of reach.
fn cell_hash(cell: &str) -> u64 {
    let digest = sha2::Sha256::digest(cell.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Counts one event of `metric` (in `dimension`) for a voucher in `month` (year * 100 + month)
/// and the quarter and year around it, within a transaction, on `today`.
pub(super) fn count(
    aggregates: &TransactionalTree,
    counted: &mut Counted<'_>,
    measure: Measure<'_>,
    month: i32,
    amount_cents: i64,
    today: Day,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let week = week_of(today);
    for period in Period::containing(month) {
        let name = measure.cell(period);
        let mut cell = match aggregates.get(name.as_bytes())? {
            Some(bytes) => {
                StoredCell::decode(&bytes).map_err(ConflictableTransactionError::Abort)?
            }
            None => StoredCell::EMPTY,
        };
        cell.changing_in(week);
        cell.now.count += 1;
        cell.now.amount_cents += amount_cents;
        if counted.first_time(&name)? {
            cell.now.vouchers += 1;
        }
        aggregates.insert(name.as_bytes(), &cell.encode()[..])?;
    }
    Ok(())
}

impl Store {
    /// The dimensions counted under `prefix` (`metric/period/`), e.g. every redeeming city.
    pub fn dimensions(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.aggregates
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|key| {
                let key = key?;
                Ok(String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
            })
            .collect()
    }

    /// The cell `name` now; zeros if nothing was counted in it.
    pub fn aggregate(&self, name: &str) -> Result<Aggregate, StoreError> {
        Ok(self.stored_cell(name)?.now)
    }

    /// The last day whose events [`Store::released_aggregate`] counts on `today`: the Sunday
    /// before `today`'s week.
    pub fn released_through(today: Day) -> Day {
        let monday = week_of(today) * 7 - 3;
        Day::from_days_since_epoch(i32::try_from(monday - 1).unwrap_or(i32::MIN))
    }

    /// The cell `name` as it was at the start of the week that holds `today` (Monday 00:00
    /// UTC): what was counted in earlier weeks. Every cell read so shows the same moment.
    pub fn released_aggregate(&self, name: &str, today: Day) -> Result<Aggregate, StoreError> {
        Ok(self.stored_cell(name)?.at_start_of(week_of(today)))
    }

    fn stored_cell(&self, name: &str) -> Result<StoredCell, StoreError> {
        match self.aggregates.get(name.as_bytes())? {
            Some(bytes) => StoredCell::decode(&bytes),
            None => Ok(StoredCell::EMPTY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(count: u64) -> Aggregate {
        Aggregate {
            count,
            vouchers: count,
            amount_cents: 100 * count as i64,
        }
    }

    fn change(cell: &mut StoredCell, week: i64) {
        cell.changing_in(week);
        cell.now.count += 1;
        cell.now.vouchers += 1;
        cell.now.amount_cents += 100;
    }

    #[test]
    fn a_cell_shows_what_was_counted_before_the_week_read_in() {
        let mut cell = StoredCell::EMPTY;
        for _ in 0..3 {
            change(&mut cell, 10);
        }
        assert_eq!(cell.at_start_of(10), numbers(0), "all three in week 10");
        assert_eq!(cell.at_start_of(11), numbers(3));
        change(&mut cell, 12);
        assert_eq!(cell.at_start_of(12), numbers(3));
        assert_eq!(cell.at_start_of(13), numbers(4));
        let cell = StoredCell::decode(&cell.encode()).unwrap();
        assert_eq!((cell.at_start_of(12), cell.now), (numbers(3), numbers(4)));
    }

    #[test]
    fn a_cell_of_a_store_from_before_releases_is_read_and_kept() {
        let mut old = [0u8; 24];
        numbers(7).encode_into(&mut old);
        let mut cell = StoredCell::decode(&old).unwrap();
        assert_eq!(cell.at_start_of(week_of(Day::today())), numbers(7));
        change(&mut cell, 20);
        assert_eq!(
            (cell.at_start_of(20), cell.at_start_of(21)),
            (numbers(7), numbers(8))
        );
        assert!(StoredCell::decode(&old[..23]).is_err());
    }

    #[test]
    fn weeks_begin_on_monday() {
        let week = |d: &str| week_of(Day::parse(d).unwrap());
        assert_eq!(
            week("2026-03-01"),
            week("2026-02-23"),
            "Sunday, Monday before"
        );
        assert_eq!(week("2026-03-02"), week("2026-03-01") + 1, "Monday");
        assert_eq!(week("2026-03-08"), week("2026-03-02"));
        for day in ["2026-03-02", "2026-03-05", "2026-03-08"] {
            let day = Day::parse(day).unwrap();
            assert_eq!(Store::released_through(day).to_string(), "2026-03-01");
        }
    }
}
