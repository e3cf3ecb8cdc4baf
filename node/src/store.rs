//! The node's durable state in sled, reached only through domain methods (`issue`, `revoke`,
//! `voucher`, `list`), so that services never touch trees and another backend could stand
//! behind the same methods.
//!
//! Trees: `issued` (serial → the signed voucher as issued), `voucher_state` (serial →
//! revocation and claimed sum), `issued_by_time` (issue time ‖ serial → nothing; for listing
//! newest first). Every change that must survive is one transaction across the trees it
//! touches, flushed to disk before the method returns.

use prost::Message;
use schein_proto::v1::RevocationReason;
use schein_proto::voucher::VerifiedVoucher;
use schein_proto::{Serial, SignedVoucher};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

/// The signed voucher as the office issued it. Never changes.
#[derive(Clone, PartialEq, prost::Message)]
struct IssuedRecord {
    #[prost(bytes = "vec", tag = "1")]
    signed_voucher: Vec<u8>,
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    issued_at: i64,
}

/// What changes about a voucher after issue.
#[derive(Clone, PartialEq, prost::Message)]
struct StateRecord {
    #[prost(int64, optional, tag = "1")]
    revoked_at: Option<i64>,
    #[prost(enumeration = "RevocationReason", tag = "2")]
    revocation_reason: i32,
    /// Settled treatment claims, euro cents.
    #[prost(int64, tag = "3")]
    claimed_cents: i64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("no voucher with this serial was issued here")]
    UnknownVoucher,
    #[error("the voucher was revoked already")]
    AlreadyRevoked,
    #[error("the serial is taken")]
    SerialTaken,
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(error: TransactionError<StoreError>) -> Self {
        match error {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// A voucher as its issuer keeps it.
#[derive(Clone, Debug)]
pub struct StoredVoucher {
    pub signed: SignedVoucher,
    pub voucher: VerifiedVoucher,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: RevocationReason,
    pub claimed_cents: i64,
}

impl StoredVoucher {
    /// Cap minus settled treatment claims; `None` if uncapped.
    pub fn remaining_cap_cents(&self) -> Option<i64> {
        self.voucher.cap_cents.map(|cap| cap - self.claimed_cents)
    }
}

/// Position in the newest-first listing: issue time and serial.
pub type ListCursor = [u8; 8 + 10];

/// The node's storage.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    issued: sled::Tree,
    state: sled::Tree,
    by_time: sled::Tree,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl Store {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Self {
            issued: db.open_tree("issued")?,
            state: db.open_tree("voucher_state")?,
            by_time: db.open_tree("issued_by_time")?,
            db,
        })
    }

    /// Records a newly signed voucher. Fails with [`StoreError::SerialTaken`] if the serial
    /// exists (the caller draws another).
    pub async fn issue(&self, signed: &SignedVoucher, issued_at: i64) -> Result<(), StoreError> {
        let voucher = signed
            .decode_own()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let serial = voucher.serial;
        let issued = IssuedRecord {
            signed_voucher: signed.to_bytes(),
            issued_at,
        }
        .encode_to_vec();
        let state = StateRecord::default().encode_to_vec();
        let time_key = time_key(issued_at, &serial);
        (&self.issued, &self.state, &self.by_time).transaction(
            |(issued_tree, state_tree, time_tree)| {
                if issued_tree.get(serial.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::SerialTaken));
                }
                issued_tree.insert(serial.as_bytes(), issued.as_slice())?;
                state_tree.insert(serial.as_bytes(), state.as_slice())?;
                time_tree.insert(&time_key[..], &[][..])?;
                Ok(())
            },
        )?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Marks a voucher revoked at `at` (seconds since the epoch).
    pub async fn revoke(
        &self,
        serial: Serial,
        reason: RevocationReason,
        at: i64,
    ) -> Result<StoredVoucher, StoreError> {
        self.state.transaction(|state_tree| {
            let bytes =
                state_tree
                    .get(serial.as_bytes())?
                    .ok_or(ConflictableTransactionError::Abort(
                        StoreError::UnknownVoucher,
                    ))?;
            let mut state = StateRecord::decode(bytes.as_ref()).map_err(|_| {
                ConflictableTransactionError::Abort(corrupt("voucher state record"))
            })?;
            if state.revoked_at.is_some() {
                return Err(ConflictableTransactionError::Abort(
                    StoreError::AlreadyRevoked,
                ));
            }
            state.revoked_at = Some(at);
            state.revocation_reason = reason as i32;
            state_tree.insert(serial.as_bytes(), state.encode_to_vec())?;
            Ok(())
        })?;
        self.db.flush_async().await?;
        self.voucher(serial)?.ok_or(StoreError::UnknownVoucher)
    }

    /// The voucher with `serial`, if this node issued it.
    pub fn voucher(&self, serial: Serial) -> Result<Option<StoredVoucher>, StoreError> {
        let Some(issued) = self.issued.get(serial.as_bytes())? else {
            return Ok(None);
        };
        let state = self
            .state
            .get(serial.as_bytes())?
            .ok_or_else(|| corrupt("voucher without state"))?;
        Self::assemble(&issued, &state).map(Some)
    }

    fn assemble(issued: &[u8], state: &[u8]) -> Result<StoredVoucher, StoreError> {
        let issued = IssuedRecord::decode(issued).map_err(|_| corrupt("issued voucher record"))?;
        let state = StateRecord::decode(state).map_err(|_| corrupt("voucher state record"))?;
        let signed = SignedVoucher::from_bytes(&issued.signed_voucher)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let voucher = signed
            .decode_own()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(StoredVoucher {
            signed,
            voucher,
            issued_at: issued.issued_at,
            revoked_at: state.revoked_at,
            revocation_reason: RevocationReason::try_from(state.revocation_reason)
                .unwrap_or(RevocationReason::Unspecified),
            claimed_cents: state.claimed_cents,
        })
    }

    /// Up to `limit` vouchers accepted by `keep`, newest first, starting after `after`. Also
    /// returns where the next page starts, if anything is left.
    pub fn list(
        &self,
        after: Option<ListCursor>,
        limit: usize,
        keep: impl Fn(&StoredVoucher) -> bool,
    ) -> Result<(Vec<StoredVoucher>, Option<ListCursor>), StoreError> {
        let range = match after {
            Some(cursor) => self.by_time.range(..cursor.to_vec()),
            None => self.by_time.iter(),
        };
        let mut page = Vec::new();
        for entry in range.rev() {
            let (key, _) = entry?;
            let cursor: ListCursor = key
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("listing index key"))?;
            if page.len() == limit {
                let next = last_cursor(&page);
                return Ok((page, Some(next)));
            }
            let serial = Serial::from_slice(&cursor[8..]).map_err(|_| corrupt("listing index"))?;
            let voucher = self
                .voucher(serial)?
                .ok_or_else(|| corrupt("listing index"))?;
            if keep(&voucher) {
                page.push(voucher);
            }
        }
        Ok((page, None))
    }

    /// Writes everything to disk; called on shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn time_key(issued_at: i64, serial: &Serial) -> ListCursor {
    let mut key = [0u8; 18];
    // Offset so that the big-endian bytes sort like the signed number.
    key[..8].copy_from_slice(&((issued_at as u64) ^ (1 << 63)).to_be_bytes());
    key[8..].copy_from_slice(serial.as_bytes());
    key
}

fn last_cursor(page: &[StoredVoucher]) -> ListCursor {
    page.last()
        .map(|v| time_key(v.issued_at, &v.voucher.serial))
        .unwrap_or([0; 18])
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use schein_proto::Day;
    use schein_proto::voucher::new_body;

    use super::*;

    fn signed(key: &SigningKey) -> SignedVoucher {
        let from = Day::from_days_since_epoch(20_000);
        let body = new_body(
            "leipzig",
            Serial::random(),
            &key.verifying_key(),
            from,
            from.checked_add_days(90).unwrap(),
            &[],
            Some(50_000),
        );
        SignedVoucher::sign(&body, key)
    }

    #[tokio::test]
    async fn issue_revoke_and_list_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let vouchers: Vec<SignedVoucher> = (0..5).map(|_| signed(&key)).collect();
        {
            let store = Store::open(dir.path()).unwrap();
            for (i, v) in vouchers.iter().enumerate() {
                store.issue(v, 1_000 + i as i64).await.unwrap();
            }
            assert!(matches!(
                store.issue(&vouchers[0], 2_000).await,
                Err(StoreError::SerialTaken)
            ));
            let serial = vouchers[1].decode_own().unwrap().serial;
            store
                .revoke(serial, RevocationReason::Lost, 5_000)
                .await
                .unwrap();
            assert!(matches!(
                store.revoke(serial, RevocationReason::Lost, 5_001).await,
                Err(StoreError::AlreadyRevoked)
            ));
            assert!(matches!(
                store
                    .revoke(Serial::random(), RevocationReason::Lost, 5_001)
                    .await,
                Err(StoreError::UnknownVoucher)
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        let serial = vouchers[1].decode_own().unwrap().serial;
        let revoked = store.voucher(serial).unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(5_000));
        assert_eq!(revoked.revocation_reason, RevocationReason::Lost);

        let (first, next) = store.list(None, 2, |_| true).unwrap();
        assert_eq!(
            first.iter().map(|v| v.issued_at).collect::<Vec<_>>(),
            [1_004, 1_003]
        );
        let (second, next) = store.list(next, 2, |_| true).unwrap();
        assert_eq!(
            second.iter().map(|v| v.issued_at).collect::<Vec<_>>(),
            [1_002, 1_001]
        );
        let (third, next) = store.list(next, 2, |_| true).unwrap();
        assert_eq!(
            third.iter().map(|v| v.issued_at).collect::<Vec<_>>(),
            [1_000]
        );
        assert!(next.is_none());
        let (only_revoked, _) = store.list(None, 10, |v| v.revoked_at.is_some()).unwrap();
        assert_eq!(only_revoked.len(), 1);
    }
}
