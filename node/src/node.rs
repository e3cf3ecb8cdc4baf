//! What the services of one node share: its identity and keys, its store, its roster, and its
//! connections to the other members.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use schein_proto::{Day, Serial};
use sha2::Digest;

use crate::config::Config;
use crate::peers::Peers;
use crate::roster::{Limits, Roster};
use crate::store::Store;

/// One running node's shared state.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub prefix: String,
    /// Every signing key this node holds; which one signs is the roster's windows' choice.
    signing_keys: RwLock<Arc<Vec<SigningKey>>>,
    /// Where `key rotate` puts new keys: read again when a roster adds a key of this node.
    pub key_dir: PathBuf,
    /// Secret of the per-day log tags (the first key's; tags need not follow rotation).
    log_secret: [u8; 32],
    pub default_cap_cents: i64,
    pub second_approval_above_cents: i64,
    pub annual_budget_cents: i64,
    pub clock_skew: Duration,
    /// The node's directory (configuration, register of enrolled identities).
    pub base_dir: PathBuf,
    /// The roster file; adopted versions are kept beside it.
    pub roster_path: PathBuf,
    /// The CA's key file and certificate: renewing a client identity signs with them.
    pub ca_key_path: PathBuf,
    pub ca_cert_pem: String,
    pub store: Store,
    pub peers: Peers,
    /// Client certificates refused although their CA vouches for them.
    pub revocations: Arc<crate::revocation::Revocations>,
    /// Records for vouchers this node never issued, per member today.
    pub unknown_serials: crate::domain::settle::DailyQuota,
    /// Other records this node rejected, per member today.
    pub rejections: crate::domain::settle::DailyQuota,
    roster: RwLock<Arc<Roster>>,
    /// Woken when something names a key or member this node does not know yet: the roster
    /// loop asks the members at once instead of at its next round.
    pub roster_wanted: tokio::sync::Notify,
}

impl Node {
    pub fn new(
        config: &Config,
        store: Store,
        revocations: Arc<crate::revocation::Revocations>,
    ) -> Self {
        let settings = &config.settings;
        Self {
            id: settings.node_id.clone(),
            name: settings.name.clone(),
            prefix: settings.prefix.clone(),
            signing_keys: RwLock::new(Arc::new(
                std::iter::once(config.signing_key.clone())
                    .chain(
                        config
                            .signing_keys
                            .iter()
                            .filter(|k| k.verifying_key() != config.signing_key.verifying_key())
                            .cloned(),
                    )
                    .collect(),
            )),
            key_dir: config.key_dir.clone(),
            log_secret: config.signing_key.to_bytes(),
            default_cap_cents: settings.default_cap_cents,
            second_approval_above_cents: settings.second_approval_above_cents,
            annual_budget_cents: settings.annual_budget_cents,
            clock_skew: config.clock_skew,
            base_dir: config.base_dir.clone(),
            roster_path: config.roster_path.clone(),
            ca_key_path: config.ca_key_path.clone(),
            ca_cert_pem: config.ca_cert_pem.clone(),
            store,
            revocations,
            unknown_serials: crate::domain::settle::DailyQuota::new(
                crate::domain::settle::UNKNOWN_PER_DAY,
            ),
            rejections: crate::domain::settle::DailyQuota::new(
                crate::domain::settle::REJECTED_PER_DAY,
            ),
            peers: Peers::new(
                config.tls.clone(),
                config.peer_timeout,
                settings.max_message_bytes,
            ),
            roster: RwLock::new(Arc::new(config.roster.clone())),
            roster_wanted: tokio::sync::Notify::new(),
        }
    }

    /// The roster in force now.
    pub fn roster(&self) -> Arc<Roster> {
        self.roster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `roster` in force here, and reads the key directory again if it names a key of this
    /// node the node does not hold yet (a rotation made while it runs).
    pub fn replace_roster(&self, roster: Roster) {
        let unknown_key = roster.member(&self.id).is_some_and(|me| {
            let held = self.keys();
            me.signing_keys
                .iter()
                .any(|k| !held.iter().any(|own| own.verifying_key() == k.public_key))
        });
        if unknown_key {
            let first = self.keys().first().cloned();
            if let Some(first) = first {
                // The first key stays first: it is the fallback.
                match crate::config::read_rotated_keys(&self.key_dir, first) {
                    Ok(keys) => {
                        *self
                            .signing_keys
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                    }
                    Err(error) => tracing::error!(%error, "cannot read the signing keys again"),
                }
            }
        }
        *self
            .roster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(roster);
    }

    fn keys(&self) -> Arc<Vec<SigningKey>> {
        self.signing_keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The key this node signs with on `day`: the one of its keys that the roster's windows
    /// choose (the newest whose window holds the day, unless declared compromised). Falls back
    /// to the key configuration loading chose for the day the node started (kept first).
    pub fn signing_key_on(&self, day: Day) -> SigningKey {
        let keys = self.keys();
        let chosen = self
            .roster()
            .member(&self.id)
            .and_then(|me| me.signing_key_on(day))
            .and_then(|k| keys.iter().find(|own| own.verifying_key() == k.public_key))
            .cloned();
        chosen.unwrap_or_else(|| keys[0].clone())
    }

    /// The key this node signs with today.
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key_on(Day::today())
    }

    /// The short code of one of this node's vouchers (empty if the prefix were unusable, which
    /// configuration loading rules out).
    pub fn short_code(&self, serial: Serial) -> String {
        schein_proto::ShortCode::new(&self.prefix, serial)
            .map(|c| c.to_string())
            .unwrap_or_default()
    }

    /// The ceilings this node publishes in its member entry and enforces as issuer.
    pub fn limits(&self) -> Limits {
        self.roster()
            .member(&self.id)
            .map(|me| me.limits())
            .unwrap_or_default()
    }

    /// A tag for `serial` in debug logs: the same voucher gets the same tag on one day at this
    /// node, and unrelated tags on other days or at other nodes, so that logs can be correlated
    /// for a day without carrying the serial or any part of it (privacy rule 5).
    pub fn log_tag(&self, serial: Serial) -> String {
        let digest = sha2::Sha256::new()
            .chain_update(b"schein/log-tag/v1")
            .chain_update(self.log_secret)
            .chain_update(Day::today().days_since_epoch().to_be_bytes())
            .chain_update(serial.as_bytes())
            .finalize();
        data_encoding::HEXLOWER.encode(&digest[..4])
    }

    /// The earliest and latest day it may be now anywhere in the federation, given the
    /// tolerated clock skew.
    pub fn today_range(&self) -> (Day, Day) {
        let now = time::OffsetDateTime::now_utc();
        let skew = time::Duration::try_from(self.clock_skew).unwrap_or(time::Duration::ZERO);
        (
            Day::from_date((now - skew).date()),
            Day::from_date((now + skew).date()),
        )
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
