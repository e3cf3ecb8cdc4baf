//! Checking a node's ledger: entries numbered from 1 without gaps, each holding the hash of the
//! one before, ending at the head the node signed. Anyone with the node's public key can run it.

use ed25519_dalek::VerifyingKey;
use prost::Message;
use sha2::Digest;

use crate::signed::{self, Kind};
use crate::v1::{LedgerEntry, LedgerHead, SigningKey};

/// SHA-256 of an entry's encoding: what the next entry and the head refer to.
pub fn entry_hash(entry: &LedgerEntry) -> [u8; 32] {
    sha2::Sha256::digest(entry.encode_to_vec()).into()
}

/// Why a ledger does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("entry {expected} is missing (found {found})")]
    Gap { expected: u64, found: u64 },
    #[error("entry {0} does not hold the hash of the entry before it: the chain is broken")]
    Broken(u64),
    #[error("the signed head names entry {head} but the ledger ends at {last}")]
    HeadMismatch { head: u64, last: u64 },
    #[error("the signed head's hash does not match the last entry")]
    HeadHash,
    #[error("the head's signature does not verify: {0}")]
    HeadSignature(String),
}

/// A checked ledger: how many entries, and the head that was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLedger {
    pub entries: u64,
    pub head: LedgerHead,
}

/// Checks `entries` (all of them, from 1) against `signed_head`, signed with one of `keys`.
pub fn verify_chain(
    entries: &[LedgerEntry],
    signed_head: &[u8],
    keys: &[SigningKey],
) -> Result<CheckedLedger, LedgerError> {
    let claimed: LedgerHead =
        signed::peek(signed_head).map_err(|e| LedgerError::HeadSignature(e.to_string()))?;
    let key = keys
        .iter()
        .find(|k| k.key_id == claimed.key_id)
        .and_then(|k| <[u8; 32]>::try_from(k.public_key.as_slice()).ok())
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| LedgerError::HeadSignature("signed with an unknown key".into()))?;
    let head: LedgerHead = signed::open(Kind::LedgerHead, signed_head, &key)
        .map_err(|e| LedgerError::HeadSignature(e.to_string()))?;
    let mut previous = [0u8; 32];
    for (i, entry) in entries.iter().enumerate() {
        let expected = i as u64 + 1;
        if entry.seq != expected {
            return Err(LedgerError::Gap {
                expected,
                found: entry.seq,
            });
        }
        if entry.prev_hash != previous {
            return Err(LedgerError::Broken(entry.seq));
        }
        previous = entry_hash(entry);
    }
    let last = entries.len() as u64;
    if head.seq != last {
        return Err(LedgerError::HeadMismatch {
            head: head.seq,
            last,
        });
    }
    if head.hash != previous {
        return Err(LedgerError::HeadHash);
    }
    Ok(CheckedLedger {
        entries: last,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<LedgerEntry> {
        let mut previous = [0u8; 32];
        (1..=n)
            .map(|seq| {
                let entry = LedgerEntry {
                    seq,
                    prev_hash: previous.to_vec(),
                    event: vec![seq as u8; 3],
                };
                previous = entry_hash(&entry);
                entry
            })
            .collect()
    }

    fn head(
        entries: &[LedgerEntry],
        key: &ed25519_dalek::SigningKey,
    ) -> (Vec<u8>, Vec<SigningKey>) {
        let hash = entries.last().map(entry_hash).unwrap_or([0; 32]);
        let key_id = crate::KeyId::of(&key.verifying_key()).0;
        let sealed = signed::seal(
            Kind::LedgerHead,
            &LedgerHead {
                node: "leipzig".into(),
                seq: entries.len() as u64,
                hash: hash.to_vec(),
                key_id: key_id.clone(),
            },
            key,
        );
        let keys = vec![SigningKey {
            key_id,
            public_key: key.verifying_key().as_bytes().to_vec(),
            valid_from: None,
            valid_until: None,
        }];
        (sealed, keys)
    }

    #[test]
    fn a_whole_chain_checks_out_and_any_change_is_caught() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let entries = chain(5);
        let (signed_head, keys) = head(&entries, &key);
        assert_eq!(
            verify_chain(&entries, &signed_head, &keys).unwrap().entries,
            5
        );

        let mut altered = entries.clone();
        altered[2].event = b"paid twice".to_vec();
        assert_eq!(
            verify_chain(&altered, &signed_head, &keys),
            Err(LedgerError::Broken(4))
        );
        let mut last_altered = entries.clone();
        last_altered[4].event = b"x".to_vec();
        assert_eq!(
            verify_chain(&last_altered, &signed_head, &keys),
            Err(LedgerError::HeadHash)
        );
        let mut dropped = entries.clone();
        dropped.remove(1);
        assert!(matches!(
            verify_chain(&dropped, &signed_head, &keys),
            Err(LedgerError::Gap { .. })
        ));
        let truncated = &entries[..4];
        assert!(matches!(
            verify_chain(truncated, &signed_head, &keys),
            Err(LedgerError::HeadMismatch { .. })
        ));
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let (_, other_keys) = head(&entries, &other);
        assert!(matches!(
            verify_chain(&entries, &signed_head, &other_keys),
            Err(LedgerError::HeadSignature(_))
        ));
        let (empty_head, keys) = head(&[], &key);
        assert_eq!(verify_chain(&[], &empty_head, &keys).unwrap().entries, 0);
    }
}
