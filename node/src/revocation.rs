//! Revoked client certificates. This node's own come from its register (`enrolled.toml`, which
//! `schein-node identity revoke` writes; re-read within a second of a change, so a revocation
//! takes effect at once); every other member's come from that member, signed with its key, asked
//! for every half minute and kept in the store, so that a restart forgets none. The TLS door
//! refuses a revoked certificate at the handshake and the role table on every request, so a
//! revocation also cuts the connections already open. Lists hold only certificate
//! fingerprints: nothing about who held them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::RevocationList;
use schein_proto::{Day, KeyId};
use tokio::sync::watch;

use crate::enrolled::{self, RegisterError};
use crate::node::{Node, unix_now};
use crate::pki::{Identity, Role};
use crate::roster::Member;

/// How often each member is asked for its list.
pub const PEER_INTERVAL: Duration = Duration::from_secs(30);
/// How often the register is read again.
const OWN_INTERVAL: Duration = Duration::from_secs(1);
/// How far in the future a member's list may be dated (clocks differ a little).
const FUTURE_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Default, PartialEq, Eq)]
struct Own {
    fingerprints: HashSet<[u8; 32]>,
    /// Revoked entries of registers older than fingerprints: refused by handle...
    names: HashSet<(Role, String)>,
    /// ...except the certificates enrolled since, with a fingerprint, and not revoked.
    allowed: HashSet<[u8; 32]>,
}

#[derive(Debug, Default)]
struct PeerList {
    issued_at: i64,
    fingerprints: HashSet<[u8; 32]>,
}

/// Every certificate this node refuses as revoked.
#[derive(Debug)]
pub struct Revocations {
    node: String,
    register_dir: PathBuf,
    own: RwLock<Own>,
    peers: RwLock<HashMap<String, PeerList>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match lock.read() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match lock.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Revocations {
    /// This node's revocations from the register in `register_dir`.
    pub fn load(node: &str, register_dir: &Path) -> Result<Arc<Self>, RegisterError> {
        let revocations = Self {
            node: node.to_owned(),
            register_dir: register_dir.to_path_buf(),
            own: RwLock::default(),
            peers: RwLock::default(),
        };
        revocations.refresh_own()?;
        Ok(Arc::new(revocations))
    }

    /// Re-reads the register (it is small: every time, rather than trusting a modification
    /// time that may not change within a second); whether what it revokes changed.
    pub fn refresh_own(&self) -> Result<bool, RegisterError> {
        let revoked = enrolled::revoked(&self.register_dir)?;
        let fresh = Own {
            fingerprints: revoked.fingerprints.into_iter().collect(),
            names: revoked.handles.into_iter().collect(),
            allowed: revoked.allowed.into_iter().collect(),
        };
        let mut own = write(&self.own);
        let changed = *own != fresh;
        *own = fresh;
        Ok(changed)
    }

    /// Whether the certificate of `identity` with `fingerprint` is revoked: by this node, if it
    /// is one of this node's, else by the member that issued it.
    pub fn is_revoked(&self, identity: &Identity, fingerprint: &[u8; 32]) -> bool {
        if identity.node == self.node {
            let own = read(&self.own);
            own.fingerprints.contains(fingerprint)
                || (own.names.contains(&(identity.role, identity.name.clone()))
                    && !own.allowed.contains(fingerprint))
        } else {
            read(&self.peers)
                .get(&identity.node)
                .is_some_and(|list| list.fingerprints.contains(fingerprint))
        }
    }

    /// This node's list, signed with `key`.
    pub fn signed_own(&self, key: &SigningKey) -> Vec<u8> {
        let mut fingerprints: Vec<Vec<u8>> = read(&self.own)
            .fingerprints
            .iter()
            .map(|f| f.to_vec())
            .collect();
        fingerprints.sort_unstable();
        let list = RevocationList {
            node: self.node.clone(),
            issued_at: unix_now(),
            fingerprints,
            key_id: KeyId::of(&key.verifying_key()).0,
        };
        signed::seal(Kind::Revocations, &list, key)
    }

    /// Takes `member`'s signed list if it is genuine and newer than the one held; whether it was.
    pub fn adopt(&self, member: &Member, signed_list: &[u8]) -> Result<bool, String> {
        let list: RevocationList = member
            .open(signed_list, Day::today())
            .map_err(|e| format!("the revocation list {e}"))?;
        if list.node != member.id() {
            return Err(format!("the revocation list names node '{}'", list.node));
        }
        // A list dated in the future would freeze the member's list until then.
        if list.issued_at > unix_now() + FUTURE_TOLERANCE_SECONDS {
            return Err("the revocation list is dated in the future".into());
        }
        let mut peers = write(&self.peers);
        let held = peers.entry(member.id().to_owned()).or_default();
        if list.issued_at <= held.issued_at {
            return Ok(false);
        }
        held.issued_at = list.issued_at;
        held.fingerprints = list
            .fingerprints
            .iter()
            .filter_map(|f| <[u8; 32]>::try_from(f.as_slice()).ok())
            .collect();
        Ok(true)
    }
}

/// Takes the members' lists kept in the store, before the node serves (a restart forgets none).
pub fn adopt_stored(node: &Node) {
    for (member, signed_list) in node.store.peer_revocations().unwrap_or_default() {
        if let Some(member) = node.roster().member(&member) {
            let _ = node.revocations.adopt(member, &signed_list);
        }
    }
}

/// Keeps the revocations current until `stop` turns true: the register every second, and every
/// member's list every [`PEER_INTERVAL`] (kept in the store as it came), in two loops so that a
/// slow member never delays this node's own revocations.
pub async fn run_sync(node: Arc<Node>, stop: watch::Receiver<bool>) {
    tokio::join!(own_loop(node.clone(), stop.clone()), peers_loop(node, stop));
}

async fn own_loop(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(OWN_INTERVAL) => {}
        }
        if *stop.borrow() {
            break;
        }
        match node.revocations.refresh_own() {
            Ok(true) => tracing::info!("revoked identities re-read from the register"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "the register of identities cannot be read"),
        }
    }
}

async fn peers_loop(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        let roster = node.roster();
        let asked = roster
            .members()
            .filter(|m| m.id() != node.id && m.entry.endpoint.is_some())
            .map(|member| fetch(&node, member));
        futures::future::join_all(asked).await;
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(PEER_INTERVAL) => {}
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// Asks `member` for its list and keeps it if it is newer.
async fn fetch(node: &Node, member: &Member) {
    match node.peers.revoked_identities(member).await {
        Ok(signed_list) => match node.revocations.adopt(member, &signed_list) {
            Ok(true) => {
                if let Err(error) = node
                    .store
                    .keep_peer_revocations(member.id(), &signed_list)
                    .await
                {
                    tracing::warn!(%error, "a member's revocations could not be stored");
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(peer = member.id(), %error, "a member's revocation list refused");
            }
        },
        Err(error) => {
            tracing::debug!(peer = member.id(), %error, "a member's revocations could not be asked for");
        }
    }
}
