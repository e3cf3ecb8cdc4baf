//! What the services of one node share: its identity and keys, its store, its roster, and its
//! connections to the other members.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use schein_proto::Day;

use crate::config::Config;
use crate::peers::Peers;
use crate::roster::Roster;
use crate::store::Store;

/// One running node's shared state.
#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub signing_key: SigningKey,
    pub default_cap_cents: i64,
    pub second_approval_above_cents: i64,
    pub annual_budget_cents: i64,
    pub clock_skew: Duration,
    pub store: Store,
    pub peers: Peers,
    roster: RwLock<Arc<Roster>>,
}

impl Node {
    pub fn new(config: &Config, store: Store) -> Self {
        let settings = &config.settings;
        Self {
            id: settings.node_id.clone(),
            name: settings.name.clone(),
            prefix: settings.prefix.clone(),
            signing_key: config.signing_key.clone(),
            default_cap_cents: settings.default_cap_cents,
            second_approval_above_cents: settings.second_approval_above_cents,
            annual_budget_cents: settings.annual_budget_cents,
            clock_skew: config.clock_skew,
            store,
            peers: Peers::new(
                config.tls.clone(),
                config.peer_timeout,
                settings.max_message_bytes,
            ),
            roster: RwLock::new(Arc::new(config.roster.clone())),
        }
    }

    /// The roster in force now.
    pub fn roster(&self) -> Arc<Roster> {
        self.roster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace_roster(&self, roster: Roster) {
        *self
            .roster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(roster);
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
