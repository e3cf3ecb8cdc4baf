//! Clearing at the end of a period (DESIGN.md, flow 6): this node's account with each peer —
//! what it owes as issuer, what it is owed as redeemer, claim by claim — and the stored result
//! of reconciling it with the peer's account. Closing a period makes the issuer refuse
//! settlements for its months (`settle` checks the mark).

use prost::Message;
use schein_proto::period::Period;
use schein_proto::v1::{ClaimAmount, ClaimState, ClearingResult, Outcome, Receipt};

use super::claims::claim_entries;
use super::settle::closed_key;
use super::{Store, StoreError, corrupt};

fn clearing_key(period: Period) -> Vec<u8> {
    format!("clearing/{period}").into_bytes()
}

impl Store {
    /// What this node owes `peer` for `period`: claims of the peer's providers it accepted.
    pub fn liabilities_to(
        &self,
        peer: &str,
        period: Period,
    ) -> Result<Vec<ClaimAmount>, StoreError> {
        let mut prefix = peer.as_bytes().to_vec();
        prefix.push(0);
        let mut owed = Vec::new();
        for entry in self.settlements.scan_prefix(&prefix) {
            let (_, value) = entry?;
            let receipt = value
                .get(32..)
                .ok_or_else(|| corrupt("settlement without receipt"))?;
            let receipt: Receipt =
                schein_proto::signed::peek(receipt).map_err(|_| corrupt("stored receipt"))?;
            if receipt.outcome == Outcome::Accepted as i32 && period.contains(receipt.service_month)
            {
                owed.push(ClaimAmount {
                    claim_id: receipt.claim_id,
                    amount_cents: receipt.amount_cents,
                });
            }
        }
        owed.sort_by(|a, b| a.claim_id.cmp(&b.claim_id));
        Ok(owed)
    }

    /// What `peer` owes this node for `period`: claims of this node's providers it settled.
    pub fn receivables_from(
        &self,
        peer: &str,
        period: Period,
    ) -> Result<Vec<ClaimAmount>, StoreError> {
        let mut owed = Vec::new();
        for (record, settlement_id) in claim_entries(&self.claims)? {
            if record.issuer != peer || record.state != ClaimState::Settled as i32 {
                continue;
            }
            let receipt: Receipt = schein_proto::signed::peek(&record.receipt)
                .map_err(|_| corrupt("stored receipt"))?;
            if period.contains(receipt.service_month) {
                owed.push(ClaimAmount {
                    claim_id: settlement_id,
                    amount_cents: record.amount_cents,
                });
            }
        }
        owed.sort_by(|a, b| a.claim_id.cmp(&b.claim_id));
        Ok(owed)
    }

    /// Closes `period`: from now on `settle` refuses its months. Done before the books are read
    /// for clearing, so that nothing lands between reading and closing.
    pub async fn mark_closed(&self, period: Period) -> Result<(), StoreError> {
        self.meta.insert(closed_key(period), &[][..])?;
        self.commit().await
    }

    /// Stores the result of clearing `period`.
    pub async fn save_clearing(
        &self,
        period: Period,
        result: &ClearingResult,
    ) -> Result<(), StoreError> {
        self.meta
            .insert(clearing_key(period), result.encode_to_vec())?;
        self.commit().await
    }

    /// The stored result of clearing `period`, if it was closed.
    pub fn clearing(&self, period: Period) -> Result<Option<ClearingResult>, StoreError> {
        self.meta
            .get(clearing_key(period))?
            .map(|bytes| {
                ClearingResult::decode(bytes.as_ref()).map_err(|_| corrupt("clearing result"))
            })
            .transpose()
    }
}
