//! What this node keeps of its peers: their revocation lists (`revocations/`) and what it witnessed of
//! their ledgers: for each peer, the latest head it signed and
//! showed us as a continuation of what it showed before, and — once a peer contradicted itself —
//! the two heads that prove it. Kept in the `meta` tree under `witness/` and `witness-alarm/`.

use prost::Message;

use super::{Store, StoreError, corrupt};

/// A peer's head as this node last witnessed it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Witnessed {
    /// The head as the peer signed it (format byte, LedgerHead, signature).
    #[prost(bytes = "vec", tag = "1")]
    pub signed_head: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub hash: Vec<u8>,
    /// When it was witnessed, Unix seconds.
    #[prost(int64, tag = "4")]
    pub at: i64,
}

/// A peer showed a ledger that does not continue the one it signed before.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Contradiction {
    /// The head the peer signed earlier, which its ledger no longer holds.
    #[prost(bytes = "vec", tag = "1")]
    pub earlier_head: Vec<u8>,
    /// The head it signed later.
    #[prost(bytes = "vec", tag = "2")]
    pub later_head: Vec<u8>,
    /// What does not match, in a sentence.
    #[prost(string, tag = "3")]
    pub finding: String,
    /// When it was found, Unix seconds.
    #[prost(int64, tag = "4")]
    pub at: i64,
}

fn key(prefix: &str, peer: &str) -> Vec<u8> {
    format!("{prefix}{peer}").into_bytes()
}

impl Store {
    /// The latest head witnessed of `peer`, if any.
    pub fn witnessed(&self, peer: &str) -> Result<Option<Witnessed>, StoreError> {
        self.meta
            .get(key("witness/", peer))?
            .map(|bytes| Witnessed::decode(bytes.as_ref()).map_err(|_| corrupt("witnessed head")))
            .transpose()
    }

    /// Records `head` as the latest witnessed of `peer`, durably — unless a later one was
    /// recorded meanwhile (a witness round and an office's check may race): the witnessed head
    /// only moves forward.
    pub async fn witness(&self, peer: &str, head: &Witnessed) -> Result<(), StoreError> {
        let key = key("witness/", peer);
        loop {
            let current = self.meta.get(&key)?;
            if let Some(bytes) = &current {
                let held =
                    Witnessed::decode(bytes.as_ref()).map_err(|_| corrupt("witnessed head"))?;
                if held.seq >= head.seq {
                    return Ok(());
                }
            }
            if self
                .meta
                .compare_and_swap(&key, current, Some(head.encode_to_vec()))?
                .is_ok()
            {
                break;
            }
        }
        self.commit().await
    }

    /// The first contradiction found in `peer`'s ledger, if any.
    pub fn contradiction(&self, peer: &str) -> Result<Option<Contradiction>, StoreError> {
        self.meta
            .get(key("witness-alarm/", peer))?
            .map(|bytes| {
                Contradiction::decode(bytes.as_ref()).map_err(|_| corrupt("witness alarm"))
            })
            .transpose()
    }

    /// Keeps the first contradiction found in `peer`'s ledger (later ones add nothing: one is
    /// proof enough). Returns whether it was new.
    pub async fn record_contradiction(
        &self,
        peer: &str,
        found: &Contradiction,
    ) -> Result<bool, StoreError> {
        let stored = self
            .meta
            .compare_and_swap(
                key("witness-alarm/", peer),
                None as Option<&[u8]>,
                Some(found.encode_to_vec()),
            )?
            .is_ok();
        self.commit().await?;
        Ok(stored)
    }

    /// Keeps `peer`'s signed revocation list, durably.
    pub async fn keep_peer_revocations(
        &self,
        peer: &str,
        signed_list: &[u8],
    ) -> Result<(), StoreError> {
        self.meta.insert(key("revocations/", peer), signed_list)?;
        self.commit().await
    }

    /// Every member's revocation list kept, as (member, signed list).
    pub fn peer_revocations(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.meta
            .scan_prefix(b"revocations/")
            .map(|entry| {
                let (k, v) = entry?;
                let member = String::from_utf8_lossy(&k["revocations/".len()..]).into_owned();
                Ok((member, v.to_vec()))
            })
            .collect()
    }
}
