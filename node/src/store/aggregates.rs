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

use schein_proto::Serial;
use schein_proto::period::Period;
use sha2::Digest;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{Store, StoreError, corrupt};

/// The numbers of one cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub count: u64,
    pub vouchers: u64,
    pub amount_cents: i64,
}

impl Aggregate {
    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bytes: [u8; 24] = bytes.try_into().map_err(|_| corrupt("aggregate cell"))?;
        let part = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            b
        };
        Ok(Self {
            count: u64::from_be_bytes(part(0)),
            vouchers: u64::from_be_bytes(part(1)),
            amount_cents: i64::from_be_bytes(part(2)),
        })
    }

    fn encode(self) -> [u8; 24] {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&self.count.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.vouchers.to_be_bytes());
        bytes[16..].copy_from_slice(&self.amount_cents.to_be_bytes());
        bytes
    }
}

/// The name of a cell.
pub fn cell_name(metric: &str, period: Period, dimension: Option<&str>) -> String {
    match dimension {
        Some(d) => format!("{metric}/{period}/{d}"),
        None => format!("{metric}/{period}"),
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
/// and the quarter and year around it, within a transaction.
pub(super) fn count(
    aggregates: &TransactionalTree,
    counted: &mut Counted<'_>,
    metric: &str,
    dimension: Option<&str>,
    month: i32,
    amount_cents: i64,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for period in Period::containing(month) {
        let name = cell_name(metric, period, dimension);
        let mut cell = match aggregates.get(name.as_bytes())? {
            Some(bytes) => {
                Aggregate::decode(&bytes).map_err(ConflictableTransactionError::Abort)?
            }
            None => Aggregate::default(),
        };
        cell.count += 1;
        cell.amount_cents += amount_cents;
        if counted.first_time(&name)? {
            cell.vouchers += 1;
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

    /// The cell `name`; zeros if nothing was counted in it.
    pub fn aggregate(&self, name: &str) -> Result<Aggregate, StoreError> {
        match self.aggregates.get(name.as_bytes())? {
            Some(bytes) => Aggregate::decode(&bytes),
            None => Ok(Aggregate::default()),
        }
    }
}
