//! Checking a node's ledger: entries numbered from 1 without gaps, each holding the hash of the
//! one before, ending at the head the node signed. Anyone with the node's public key can run it.

use ed25519_dalek::VerifyingKey;
use prost::Message;
use sha2::Digest;

use crate::signed::{self, Kind};
use crate::v1::{LedgerEntry, LedgerEvent, LedgerHead, SigningKey, ledger_event};

const ENTRY_DOMAIN: &[u8] = b"schein/ledger-entry/v1";

/// SHA-256 of what happened in an entry: of its event, or the hash given in its place.
pub fn event_digest(entry: &LedgerEntry) -> [u8; 32] {
    if entry.event.is_empty()
        && let Ok(digest) = <[u8; 32]>::try_from(entry.event_hash.as_slice())
    {
        return digest;
    }
    sha2::Sha256::digest(&entry.event).into()
}

/// An entry's hash, what the next entry and the head refer to: over its sequence number, the
/// hash before it and the digest of its event — so that the chain checks out with the events
/// left out.
pub fn entry_hash(entry: &LedgerEntry) -> [u8; 32] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(ENTRY_DOMAIN);
    hasher.update(entry.seq.to_be_bytes());
    hasher.update(&entry.prev_hash);
    hasher.update(event_digest(entry));
    hasher.finalize().into()
}

/// The entry as another node may see it: its event replaced by the event's hash.
pub fn redacted(entry: &LedgerEntry) -> LedgerEntry {
    LedgerEntry {
        seq: entry.seq,
        prev_hash: entry.prev_hash.clone(),
        event: Vec::new(),
        event_hash: event_digest(entry).to_vec(),
    }
}

/// The event digest of the entry an issuer recorded a signed receipt in.
pub fn receipt_digest(signed_receipt: &[u8]) -> [u8; 32] {
    let event = LedgerEvent {
        event: Some(ledger_event::Event::Receipt(signed_receipt.to_vec())),
    };
    sha2::Sha256::digest(event.encode_to_vec()).into()
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

/// A point in a chain: the last entry followed and its hash (`START` before the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl Position {
    pub const START: Position = Position {
        seq: 0,
        hash: [0; 32],
    };

    /// The position a head names.
    pub fn of_head(head: &LedgerHead) -> Option<Position> {
        Some(Position {
            seq: head.seq,
            hash: head.hash.as_slice().try_into().ok()?,
        })
    }

    /// Follows `entry`, which must be the next one: numbered one on, holding this position's
    /// hash.
    pub fn follow(&mut self, entry: &LedgerEntry) -> Result<(), LedgerError> {
        let expected = self.seq + 1;
        if entry.seq != expected {
            return Err(LedgerError::Gap {
                expected,
                found: entry.seq,
            });
        }
        if entry.prev_hash != self.hash {
            return Err(LedgerError::Broken(entry.seq));
        }
        *self = Position {
            seq: entry.seq,
            hash: entry_hash(entry),
        };
        Ok(())
    }

    /// Whether this position is where `head` says the chain ends.
    pub fn check_head(&self, head: &LedgerHead) -> Result<(), LedgerError> {
        if head.seq != self.seq {
            return Err(LedgerError::HeadMismatch {
                head: head.seq,
                last: self.seq,
            });
        }
        if head.hash != self.hash {
            return Err(LedgerError::HeadHash);
        }
        Ok(())
    }
}

/// Opens a signed head with whichever of `keys` it names.
pub fn open_head(signed_head: &[u8], keys: &[SigningKey]) -> Result<LedgerHead, LedgerError> {
    let claimed: LedgerHead =
        signed::peek(signed_head).map_err(|e| LedgerError::HeadSignature(e.to_string()))?;
    let key = keys
        .iter()
        .find(|k| k.key_id == claimed.key_id)
        .and_then(|k| <[u8; 32]>::try_from(k.public_key.as_slice()).ok())
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| LedgerError::HeadSignature("signed with an unknown key".into()))?;
    signed::open(Kind::LedgerHead, signed_head, &key)
        .map_err(|e| LedgerError::HeadSignature(e.to_string()))
}

/// Checks `entries` (all of them, from 1) against `signed_head`, signed with one of `keys`.
pub fn verify_chain(
    entries: &[LedgerEntry],
    signed_head: &[u8],
    keys: &[SigningKey],
) -> Result<CheckedLedger, LedgerError> {
    let head = open_head(signed_head, keys)?;
    let mut position = Position::START;
    for entry in entries {
        position.follow(entry)?;
    }
    position.check_head(&head)?;
    Ok(CheckedLedger {
        entries: position.seq,
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
                    event_hash: Vec::new(),
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
            compromised_from: None,
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

    #[test]
    fn a_chain_checks_out_with_its_events_left_out_but_not_with_one_changed() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let entries = chain(5);
        let (signed_head, keys) = head(&entries, &key);
        let shown: Vec<LedgerEntry> = entries.iter().map(redacted).collect();
        assert!(shown.iter().all(|e| e.event.is_empty()));
        assert_eq!(
            verify_chain(&shown, &signed_head, &keys).unwrap().entries,
            5
        );

        let mut altered = shown.clone();
        altered[1].event_hash[0] ^= 1;
        assert_eq!(
            verify_chain(&altered, &signed_head, &keys),
            Err(LedgerError::Broken(3))
        );
        // The sequence number is part of the hash: an entry cannot move.
        let mut moved = entries[1].clone();
        moved.seq = 7;
        assert_ne!(entry_hash(&moved), entry_hash(&entries[1]));
    }

    #[test]
    fn a_receipt_entry_is_found_by_the_receipt_alone() {
        let receipt = b"signed receipt bytes".to_vec();
        let entry = LedgerEntry {
            seq: 1,
            prev_hash: vec![0; 32],
            event: LedgerEvent {
                event: Some(ledger_event::Event::Receipt(receipt.clone())),
            }
            .encode_to_vec(),
            event_hash: Vec::new(),
        };
        assert_eq!(event_digest(&redacted(&entry)), receipt_digest(&receipt));
        assert_ne!(receipt_digest(b"another receipt"), receipt_digest(&receipt));
    }
}
