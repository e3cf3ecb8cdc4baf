//! Clearing at the end of a period (DESIGN.md, flow 6), as stored: this node's account with each
//! peer — what it owes as issuer, what it is owed as redeemer, claim by claim — the close of
//! each pair of nodes, the result of reconciling, and what a period's claim deadline is.
//!
//! A period closes per pair of nodes, and both sides record it (`closed/<period>/<peer>`): from
//! then on the issuer refuses settlements between the two for the period's months, and the
//! redeemer refuses new claims for them at once. The pair of the node with itself (its own
//! providers on its own vouchers) closes when the node closes the period. Stores of earlier
//! versions marked a whole period closed (`closed/<period>`); that still closes every pair.
//!
//! The accounts are read through an index (`clearing_index`: side ‖ peer ‖ 0 ‖ period ‖ 0 ‖
//! claim id → amount), written in the transaction that accepts a claim, under each period its
//! service month lies in: a statement walks one pair's period in the order of claim ids, page by
//! page, and never reads another pair's claims nor holds them all.
//!
//! For the deadline, the store keeps per month the last day of validity of any voucher valid
//! in that month (`validity/<YYYYMM>`), updated as vouchers are issued.

use prost::Message;
use schein_proto::period::Period;
use schein_proto::v1::{ClaimAmount, ClaimState, ClearingResult, Outcome, Receipt};
use schein_proto::{Day, voucher::claim_deadline};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{IssuedRecord, Store, StoreError, corrupt};

/// The close of one pair of nodes for a period, as recorded at this node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PairClose {
    /// The node whose office closed it: this node, or the peer.
    #[prost(string, tag = "1")]
    pub closed_by: String,
    /// The day it was closed (days since 1970-01-01).
    #[prost(int32, tag = "2")]
    pub closed_on: i32,
    /// Before the period's claim deadline, with two office identities.
    #[prost(bool, tag = "3")]
    pub early: bool,
}

/// Which account of a pair an index entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// What this node owes the peer, as issuer.
    Liabilities,
    /// What the peer owes this node, as redeemer.
    Receivables,
}

impl Side {
    fn tag(self) -> u8 {
        match self {
            Side::Liabilities => b'L',
            Side::Receivables => b'R',
        }
    }
}

fn index_prefix(side: Side, peer: &str, period: Period) -> Vec<u8> {
    let mut key = vec![side.tag()];
    key.extend_from_slice(peer.as_bytes());
    key.push(0);
    key.extend_from_slice(period.to_string().as_bytes());
    key.push(0);
    key
}

/// The index entries of one accepted claim, under each period its service month lies in.
pub(super) fn index_entries(
    side: Side,
    peer: &str,
    service_month: i32,
    claim_id: &str,
    amount_cents: i64,
) -> impl Iterator<Item = (Vec<u8>, [u8; 8])> {
    Period::containing(service_month)
        .into_iter()
        .map(move |period| {
            let mut key = index_prefix(side, peer, period);
            key.extend_from_slice(claim_id.as_bytes());
            (key, amount_cents.to_be_bytes())
        })
}

/// Indexes an accepted claim inside a transaction.
pub(super) fn index_in(
    index: &TransactionalTree,
    side: Side,
    peer: &str,
    service_month: i32,
    claim_id: &str,
    amount_cents: i64,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for (key, amount) in index_entries(side, peer, service_month, claim_id, amount_cents) {
        index.insert(key, &amount[..])?;
    }
    Ok(())
}

fn clearing_key(period: Period) -> Vec<u8> {
    format!("clearing/{period}").into_bytes()
}

fn early_approval_key(period: Period) -> Vec<u8> {
    format!("early-close/{period}").into_bytes()
}

/// Written by earlier versions: the whole period closed.
fn legacy_closed_key(period: Period) -> Vec<u8> {
    format!("closed/{period}").into_bytes()
}

fn pair_key(period: Period, peer: &str) -> Vec<u8> {
    format!("closed/{period}/{peer}").into_bytes()
}

fn validity_key(month: i32) -> Vec<u8> {
    format!("validity/{month}").into_bytes()
}

/// Marks that the validity index covers every voucher (built once for stores of earlier
/// versions, kept up to date by `issue` since).
const VALIDITY_INDEXED: &[u8] = b"validity-indexed";

/// Whether a settlement between this node and `peer` for `month` is in a closed period, inside
/// a transaction over the `meta` tree.
pub(super) fn closed_in(
    meta: &TransactionalTree,
    peer: &str,
    month: i32,
) -> Result<bool, ConflictableTransactionError<StoreError>> {
    for period in Period::containing(month) {
        if meta.get(pair_key(period, peer))?.is_some()
            || meta.get(legacy_closed_key(period))?.is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Records, inside the issue transaction, that a voucher is valid from `from` to `until`.
pub(super) fn note_validity(
    meta: &TransactionalTree,
    from: Day,
    until: Day,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let (Some(first), Some(last)) = (from.month(), until.month()) else {
        return Err(ConflictableTransactionError::Abort(corrupt(
            "validity out of range",
        )));
    };
    let mut month = first;
    while month <= last {
        let key = validity_key(month);
        let known = match meta.get(&key)? {
            Some(bytes) => decode_day(&bytes).map_err(ConflictableTransactionError::Abort)?,
            None => i32::MIN,
        };
        if until.days_since_epoch() > known {
            meta.insert(key, &until.days_since_epoch().to_be_bytes()[..])?;
        }
        month = if month % 100 == 12 {
            month + 89
        } else {
            month + 1
        };
    }
    Ok(())
}

fn decode_day(bytes: &[u8]) -> Result<i32, StoreError> {
    let bytes: [u8; 4] = bytes.try_into().map_err(|_| corrupt("validity index"))?;
    Ok(i32::from_be_bytes(bytes))
}

impl Store {
    /// Builds the validity index from the issued vouchers if an earlier version made the store.
    pub(super) fn index_validity(&self) -> Result<(), StoreError> {
        if self.meta.get(VALIDITY_INDEXED)?.is_some() {
            return Ok(());
        }
        for entry in self.issued.iter() {
            let (_, bytes) = entry?;
            let issued =
                IssuedRecord::decode(bytes.as_ref()).map_err(|_| corrupt("issued voucher"))?;
            let voucher = schein_proto::SignedVoucher::from_bytes(&issued.signed_voucher)
                .and_then(|signed| signed.decode_own())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.meta
                .transaction(|meta| note_validity(meta, voucher.valid_from, voucher.valid_until))?;
        }
        self.meta.insert(VALIDITY_INDEXED, &[][..])?;
        self.db.flush()?;
        Ok(())
    }

    /// The last day on which a claim on one of this node's vouchers valid in `period` can be
    /// accepted; `None` if none of its vouchers was valid in it.
    pub fn period_deadline(&self, period: Period) -> Result<Option<Day>, StoreError> {
        let mut latest: Option<i32> = None;
        for month in period.months() {
            if let Some(bytes) = self.meta.get(validity_key(month))? {
                let day = decode_day(&bytes)?;
                latest = Some(latest.map_or(day, |l| l.max(day)));
            }
        }
        Ok(latest.map(|day| claim_deadline(Day::from_days_since_epoch(day))))
    }

    /// The close of the pair of this node and `peer` for `period`, if recorded.
    pub fn pair_close(&self, period: Period, peer: &str) -> Result<Option<PairClose>, StoreError> {
        if let Some(bytes) = self.meta.get(pair_key(period, peer))? {
            return PairClose::decode(bytes.as_ref())
                .map(Some)
                .map_err(|_| corrupt("pair close"));
        }
        Ok(self
            .meta
            .get(legacy_closed_key(period))?
            .map(|_| PairClose::default()))
    }

    /// Whether claims between this node and `peer` for `month` fall in a closed period.
    ///
    /// Plain reads, not a transaction: it runs for every claim, a close record is written once and
    /// never removed, and the settle transaction checks again with [`closed_in`].
    pub fn pair_closed_for_month(&self, peer: &str, month: i32) -> Result<bool, StoreError> {
        for period in Period::containing(month) {
            if self.meta.get(pair_key(period, peer))?.is_some()
                || self.meta.get(legacy_closed_key(period))?.is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records the close of the pair with `peer` for `period` (the first record stays), durably.
    pub async fn close_pair(
        &self,
        period: Period,
        peer: &str,
        close: PairClose,
    ) -> Result<PairClose, StoreError> {
        let key = pair_key(period, peer);
        let stored = self.meta.transaction(|meta| match meta.get(&key)? {
            Some(bytes) => PairClose::decode(bytes.as_ref())
                .map_err(|_| ConflictableTransactionError::Abort(corrupt("pair close"))),
            None => {
                meta.insert(key.as_slice(), close.encode_to_vec())?;
                Ok(close.clone())
            }
        })?;
        self.commit().await?;
        Ok(stored)
    }

    /// The office identity that asked to close `period` early and waits for a second one.
    pub fn early_close_approver(&self, period: Period) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get(early_approval_key(period))?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Records the first office identity's request to close `period` early.
    pub async fn request_early_close(
        &self,
        period: Period,
        approver: &str,
    ) -> Result<(), StoreError> {
        self.meta
            .insert(early_approval_key(period), approver.as_bytes())?;
        self.commit().await
    }

    /// What this node owes `peer` for `period`: claims of the peer's providers it accepted.
    pub fn liabilities_to(
        &self,
        peer: &str,
        period: Period,
    ) -> Result<Vec<ClaimAmount>, StoreError> {
        self.account(Side::Liabilities, peer, period, None)
            .collect()
    }

    /// What `peer` owes this node for `period`: claims of this node's providers it settled.
    pub fn receivables_from(
        &self,
        peer: &str,
        period: Period,
    ) -> Result<Vec<ClaimAmount>, StoreError> {
        self.account(Side::Receivables, peer, period, None)
            .collect()
    }

    /// One side of the account with `peer` for `period`, in the order of claim ids, from after
    /// `after` on; read from the index as it is consumed.
    pub fn account(
        &self,
        side: Side,
        peer: &str,
        period: Period,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<ClaimAmount, StoreError>> + use<> {
        let prefix = index_prefix(side, peer, period);
        let mut end = prefix.clone();
        // The prefix ends in 0: the next byte value bounds every key under it.
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        let start = match after {
            Some(after) => {
                let mut start = prefix.clone();
                start.extend_from_slice(after.as_bytes());
                // Just after `after`: the smallest key greater than it.
                start.push(0);
                start
            }
            None => prefix.clone(),
        };
        let skip = prefix.len();
        self.clearing_index.range(start..end).map(move |entry| {
            let (key, value) = entry?;
            let amount: [u8; 8] = value
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("clearing index entry"))?;
            let claim_id = std::str::from_utf8(key.get(skip..).unwrap_or_default())
                .map_err(|_| corrupt("clearing index key"))?;
            Ok(ClaimAmount {
                claim_id: claim_id.to_owned(),
                amount_cents: i64::from_be_bytes(amount),
            })
        })
    }

    /// How many claims one side of the account holds, and their sum, folded over the index.
    pub fn account_totals(
        &self,
        side: Side,
        peer: &str,
        period: Period,
    ) -> Result<(u64, i64), StoreError> {
        self.account(side, peer, period, None)
            .try_fold((0u64, 0i64), |(count, sum), claim| {
                let claim = claim?;
                Ok((count + 1, sum.saturating_add(claim.amount_cents)))
            })
    }

    /// Builds the clearing index and the outbox's order by next attempt from the settlements,
    /// claims and outbox of a store of format 1 (the migration to format 2). Entries are what
    /// they are derived from, so building them again changes nothing.
    pub(super) fn build_indexes(db: &sled::Db) -> Result<(), StoreError> {
        let settlements = db.open_tree("settlements")?;
        let claims = db.open_tree("claims")?;
        let index = db.open_tree("clearing_index")?;
        for entry in settlements.iter() {
            let (key, value) = entry?;
            let redeemer = key
                .split(|b| *b == 0)
                .next()
                .and_then(|r| std::str::from_utf8(r).ok())
                .ok_or_else(|| corrupt("settlement key"))?;
            let receipt = value
                .get(32..)
                .ok_or_else(|| corrupt("settlement without receipt"))?;
            let receipt: Receipt =
                schein_proto::signed::peek(receipt).map_err(|_| corrupt("stored receipt"))?;
            if receipt.outcome == Outcome::Accepted as i32 {
                for (key, amount) in index_entries(
                    Side::Liabilities,
                    redeemer,
                    receipt.service_month,
                    &receipt.claim_id,
                    receipt.amount_cents,
                ) {
                    index.insert(key, &amount[..])?;
                }
            }
        }
        for entry in super::claims::claim_entries(&claims) {
            let (record, settlement_id) = entry?;
            if record.state != ClaimState::Settled as i32 {
                continue;
            }
            let receipt: Receipt = schein_proto::signed::peek(&record.receipt)
                .map_err(|_| corrupt("stored receipt"))?;
            for (key, amount) in index_entries(
                Side::Receivables,
                &record.issuer,
                receipt.service_month,
                &settlement_id,
                record.amount_cents,
            ) {
                index.insert(key, &amount[..])?;
            }
        }
        super::claims::build_due_index(db)?;
        db.flush()?;
        Ok(())
    }

    /// Stores the result of clearing `period` as it stands.
    pub async fn save_clearing(
        &self,
        period: Period,
        result: &ClearingResult,
    ) -> Result<(), StoreError> {
        self.meta
            .insert(clearing_key(period), result.encode_to_vec())?;
        self.commit().await
    }

    /// The stored result of clearing `period`, if this node's office ever closed it.
    pub fn clearing(&self, period: Period) -> Result<Option<ClearingResult>, StoreError> {
        self.meta
            .get(clearing_key(period))?
            .map(|bytes| {
                ClearingResult::decode(bytes.as_ref()).map_err(|_| corrupt("clearing result"))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pairs_close_once_and_deadlines_follow_the_vouchers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let q3 = Period::Quarter(2026, 3);
        assert_eq!(store.period_deadline(q3).unwrap(), None);
        store
            .meta
            .transaction(|meta| {
                note_validity(
                    meta,
                    Day::parse("2026-08-15").unwrap(),
                    Day::parse("2027-01-31").unwrap(),
                )
            })
            .unwrap();
        assert_eq!(
            store.period_deadline(q3).unwrap(),
            Day::parse("2027-04-30").ok(),
            "three months after the last day of the longest voucher valid in the quarter"
        );
        assert_eq!(
            store.period_deadline(Period::Month(2027, 1)).unwrap(),
            Day::parse("2027-04-30").ok()
        );
        assert_eq!(store.period_deadline(Period::Month(2027, 2)).unwrap(), None);

        assert!(!store.pair_closed_for_month("dresden", 202_608).unwrap());
        let first = PairClose {
            closed_by: "leipzig".into(),
            closed_on: 20_800,
            early: false,
        };
        store
            .close_pair(q3, "dresden", first.clone())
            .await
            .unwrap();
        let again = PairClose {
            closed_by: "dresden".into(),
            ..first.clone()
        };
        assert_eq!(store.close_pair(q3, "dresden", again).await.unwrap(), first);
        assert!(store.pair_closed_for_month("dresden", 202_608).unwrap());
        assert!(!store.pair_closed_for_month("chemnitz", 202_608).unwrap());
        assert!(!store.pair_closed_for_month("dresden", 202_610).unwrap());
    }
}
