//! Changing the roster without a centre, the way TUF root metadata rotates: each roster is a
//! version, and version n+1 counts only with the signatures of at least `threshold` members of
//! version n, and of every node it newly names. The one exception is a member's routine key
//! rotation (adding its own next key, closing its own current window from today on), which its own
//! current key signs.
//!
//! This module owns the signed roster document (its text exactly as signed plus signatures), the
//! rule that decides whether a version follows the one held, what a change means in words for the
//! operator who signs it, the history of adopted versions kept beside the roster, and the loop
//! by which a running node takes up newer versions from the other members by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, SigningKey};
use schein_proto::{Day, KeyId, v1};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::node::Node;
use crate::roster::{MemberEntry, MemberKind, Roster, RosterError};

/// What a roster signature signs, before the body.
const CONTEXT: &[u8] = b"schein/roster/v1";

/// How often a node looks for a version adopted on its own disk (`roster adopt`).
const LOCAL_INTERVAL: Duration = Duration::from_secs(1);

/// Most versions one `RosterSince` answer carries.
pub const MAX_VERSIONS_PER_ANSWER: usize = 16;

/// Most roster text one `RosterSince` answer carries (at least one version always goes).
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// A voucher naming an unknown key makes the node ask the members early, at most this often.
const WANTED_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// How many members a node asks at once.
const ASKED_AT_ONCE: usize = 4;

/// Largest roster text taken from a member (a roster of 400 members with certificates and fee
/// schedules stays well below).
const MAX_BODY_BYTES: usize = 4 << 20;

/// One roster version as signed: the text, and who signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRoster {
    /// The roster's TOML text, exactly as signed.
    pub body: String,
    #[serde(default, rename = "signature")]
    pub signatures: Vec<RosterSignature>,
}

/// One member's signature over a roster version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterSignature {
    pub member: String,
    pub key_id: String,
    /// 64 bytes, base64.
    pub signature: String,
}

/// Why a roster version was not taken.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("the roster text is not valid: {0}")]
    Invalid(#[from] RosterError),
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error(
        "version {offered} is not newer than version {held}, which this node holds: a roster never goes back"
    )]
    Rollback { held: u64, offered: u64 },
    #[error("version {offered} does not follow version {held}, which this node holds")]
    NotNext { held: u64, offered: u64 },
    #[error("'{0}' signed it, but is not a member: a roster is signed by its members only")]
    ForeignSignature(String),
    #[error(
        "the signature of '{0}' is not genuine, or made with a key it does not list or declared compromised"
    )]
    BadSignature(String),
    #[error(
        "{have} of the {need} member signatures this change needs (signed by: {signers}); ask more members to sign"
    )]
    TooFew {
        have: usize,
        need: usize,
        signers: String,
    },
    #[error("the new member '{0}' has not signed: a city joins with its own signature")]
    NewMemberUnsigned(String),
    #[error("a key rotation of '{0}' is signed by its own current key only, and it has not signed")]
    OwnerUnsigned(String),
    #[error("it does not list this node '{0}' with this node's own entry")]
    NotOurs(String),
    #[error("{0}")]
    Proposal(String),
    #[error("the version's day: {0}")]
    MadeOn(String),
    #[error(
        "version {0} was made on another version than the one this node holds: the members signed two different versions with one number; ask the operators which one stands"
    )]
    OtherBranch(u64),
    #[error("'{0}' signed twice")]
    SignedTwice(String),
    #[error("more signatures than members")]
    TooManySignatures,
    #[error(
        "the roster changed meanwhile (this node now holds version {0}): look at `schein-node roster status` and run the command again"
    )]
    Changed(u64),
}

impl SignedRoster {
    /// An unsigned version of `roster`.
    pub fn new(roster: &Roster) -> Self {
        Self {
            body: roster.to_toml(),
            signatures: Vec::new(),
        }
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, QuorumError> {
        toml::from_str(text).map_err(|e| QuorumError::File {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, QuorumError> {
        let text = std::fs::read_to_string(path).map_err(|e| QuorumError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        let version = self.roster().map(|r| r.version()).unwrap_or_default();
        format!(
            "# schein roster version {version}, signed by its members. Check it with `schein-node roster status FILE`.\n{}",
            toml::to_string(self).unwrap_or_default()
        )
    }

    pub fn save(&self, path: &Path) -> Result<(), QuorumError> {
        crate::files::write_atomically(path, self.to_toml().as_bytes(), false).map_err(|e| {
            QuorumError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            }
        })
    }

    /// The roster the body describes.
    pub fn roster(&self) -> Result<Roster, QuorumError> {
        Ok(Roster::parse(&self.body)?)
    }

    fn message(&self) -> Vec<u8> {
        [CONTEXT, self.body.as_bytes()].concat()
    }

    /// Adds (or replaces) `member`'s signature made with `key`.
    pub fn sign(&mut self, member: &str, key: &SigningKey) {
        use ed25519_dalek::Signer;
        let signature = key.sign(&self.message());
        self.signatures.retain(|s| s.member != member);
        self.signatures.push(RosterSignature {
            member: member.to_owned(),
            key_id: KeyId::of(&key.verifying_key()).0,
            signature: data_encoding::BASE64.encode(&signature.to_bytes()),
        });
    }

    pub fn to_proto(&self) -> v1::SignedRoster {
        v1::SignedRoster {
            body: self.body.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| v1::RosterSignature {
                    member: s.member.clone(),
                    key_id: s.key_id.clone(),
                    signature: data_encoding::BASE64
                        .decode(s.signature.as_bytes())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    pub fn from_proto(proto: v1::SignedRoster) -> Self {
        Self {
            body: proto.body,
            signatures: proto
                .signatures
                .into_iter()
                .map(|s| RosterSignature {
                    member: s.member,
                    key_id: s.key_id,
                    signature: data_encoding::BASE64.encode(&s.signature),
                })
                .collect(),
        }
    }
}

/// One change from a roster version to the next, as the operator reads it before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Join {
        id: String,
        name: String,
        fingerprint: String,
    },
    Leave {
        id: String,
    },
    Endpoint {
        id: String,
        to: String,
    },
    NewCa {
        id: String,
        fingerprint: String,
    },
    PreviousCas {
        id: String,
        last_days: String,
    },
    KeyAdded {
        id: String,
        key_id: String,
        from: String,
    },
    KeyClosed {
        id: String,
        key_id: String,
        until: String,
    },
    KeyCompromised {
        id: String,
        key_id: String,
        from: String,
    },
    KeyRemoved {
        id: String,
        key_id: String,
    },
    Other {
        id: String,
        what: &'static str,
    },
    Threshold {
        from: usize,
        to: usize,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Join {
                id,
                name,
                fingerprint,
            } => write!(f, "JOIN  {id} ({name}), CA fingerprint {fingerprint}"),
            Change::Leave { id } => write!(f, "LEAVE {id}: refused everywhere from this version"),
            Change::Endpoint { id, to } => write!(f, "ENDPOINT of {id} becomes {to}"),
            Change::NewCa { id, fingerprint } => {
                write!(f, "NEW CA of {id}, fingerprint {fingerprint}")
            }
            Change::PreviousCas { id, last_days } => {
                write!(f, "OLD CA of {id} still taken until {last_days}")
            }
            Change::KeyAdded { id, key_id, from } => {
                write!(f, "KEY   {id} signs with new key {key_id} from {from}")
            }
            Change::KeyClosed { id, key_id, until } => write!(
                f,
                "KEY   {id} stops signing with key {key_id} after {until} (what it signed stays valid)"
            ),
            Change::KeyCompromised { id, key_id, from } => write!(
                f,
                "COMPROMISED key {key_id} of {id}: everything it signed for days after {from} is void"
            ),
            Change::KeyRemoved { id, key_id } => write!(
                f,
                "KEY   {key_id} of {id} removed: everything it ever signed is void"
            ),
            Change::Other { id, what } => write!(f, "CHANGE {what} of {id}"),
            Change::Threshold { from, to } => {
                write!(f, "THRESHOLD from {from} to {to} signatures")
            }
        }
    }
}

/// Every change from `old` to `new`.
pub fn changes(old: &Roster, new: &Roster) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.threshold() != new.threshold() {
        changes.push(Change::Threshold {
            from: old.threshold(),
            to: new.threshold(),
        });
    }
    for member in new.members() {
        let id = member.id().to_owned();
        let Some(before) = old.member(&id) else {
            changes.push(Change::Join {
                id,
                name: member.name().to_owned(),
                fingerprint: member.fingerprint(),
            });
            continue;
        };
        let (a, b) = (&before.entry, &member.entry);
        if a.endpoint != b.endpoint {
            changes.push(Change::Endpoint {
                id: id.clone(),
                to: b.endpoint.clone().unwrap_or_default(),
            });
        }
        if a.ca_cert.trim() != b.ca_cert.trim() {
            changes.push(Change::NewCa {
                id: id.clone(),
                fingerprint: member.fingerprint(),
            });
        }
        if a.previous_cas != b.previous_cas {
            let last_days = b
                .previous_cas
                .iter()
                .map(|p| p.valid_until.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            changes.push(Change::PreviousCas {
                id: id.clone(),
                last_days,
            });
        }
        for (what, differs) in [
            ("name", a.name != b.name),
            ("kind", a.kind != b.kind),
            ("prefix", a.prefix != b.prefix),
            ("fee schedule", a.fee_schedule != b.fee_schedule),
            ("limits", a.limits != b.limits),
        ] {
            if differs {
                changes.push(Change::Other {
                    id: id.clone(),
                    what,
                });
            }
        }
        for key in &b.signing_keys {
            match a.signing_keys.iter().find(|k| k.key_id == key.key_id) {
                None => changes.push(Change::KeyAdded {
                    id: id.clone(),
                    key_id: key.key_id.clone(),
                    from: key.valid_from.clone(),
                }),
                Some(held) => {
                    if held.compromised_from != key.compromised_from {
                        changes.push(Change::KeyCompromised {
                            id: id.clone(),
                            key_id: key.key_id.clone(),
                            from: key.compromised_from.clone().unwrap_or_else(|| "-".into()),
                        });
                    }
                    if held.valid_until != key.valid_until {
                        changes.push(Change::KeyClosed {
                            id: id.clone(),
                            key_id: key.key_id.clone(),
                            until: key.valid_until.clone().unwrap_or_else(|| "open".into()),
                        });
                    }
                    if held.valid_from != key.valid_from || held.public_key != key.public_key {
                        changes.push(Change::Other {
                            id: id.clone(),
                            what: "key window start",
                        });
                    }
                }
            }
        }
        for key in &a.signing_keys {
            if !b.signing_keys.iter().any(|k| k.key_id == key.key_id) {
                changes.push(Change::KeyRemoved {
                    id: id.clone(),
                    key_id: key.key_id.clone(),
                });
            }
        }
    }
    for member in old.members() {
        if new.member(member.id()).is_none() {
            changes.push(Change::Leave {
                id: member.id().to_owned(),
            });
        }
    }
    changes
}

/// Who must sign a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needed {
    /// A member's routine rotation of its own key: that member alone.
    Owner(String),
    /// `threshold` members of the version held, and every node the new version names anew.
    Quorum {
        threshold: usize,
        new_nodes: Vec<String>,
    },
}

/// Whether the only change is a member's own routine rotation: new keys that begin on the day
/// the version was made or later, its open windows closed on that day or later, nothing else.
fn routine_rotation(old: &MemberEntry, new: &MemberEntry, made_on: Day) -> bool {
    let strip = |e: &MemberEntry| MemberEntry {
        signing_keys: Vec::new(),
        ..e.clone()
    };
    if strip(old) != strip(new) || old.signing_keys == new.signing_keys {
        return false;
    }
    let from_made_on = |text: Option<&str>| text.and_then(|t| Day::parse(t).ok()) >= Some(made_on);
    let kept = old.signing_keys.iter().all(|held| {
        let mut same_id = new.signing_keys.iter().filter(|k| k.key_id == held.key_id);
        match (same_id.next(), same_id.next()) {
            (Some(k), None) => {
                k.public_key == held.public_key
                    && k.valid_from == held.valid_from
                    && k.compromised_from == held.compromised_from
                    && (k.valid_until == held.valid_until
                        || (held.valid_until.is_none() && from_made_on(k.valid_until.as_deref())))
            }
            _ => false,
        }
    });
    let added_ahead = new
        .signing_keys
        .iter()
        .filter(|k| !old.signing_keys.iter().any(|held| held.key_id == k.key_id))
        .all(|k| k.compromised_from.is_none() && from_made_on(Some(&k.valid_from)));
    kept && added_ahead
}

/// Who must sign the change from `held` to `next`, made on `made_on`.
pub fn needed(held: &Roster, next: &Roster, made_on: Day) -> Needed {
    let changed: Vec<&str> = next
        .members()
        .filter(|m| held.member(m.id()).is_none_or(|h| h.entry != m.entry))
        .map(|m| m.id())
        .collect();
    let same_members = held.members().count() == next.members().count()
        && held.members().all(|m| next.member(m.id()).is_some());
    if let [id] = changed.as_slice()
        && same_members
        && held.threshold_setting() == next.threshold_setting()
        && let (Some(old), Some(new)) = (held.member(id), next.member(id))
        && routine_rotation(&old.entry, &new.entry, made_on)
    {
        return Needed::Owner((*id).to_owned());
    }
    Needed::Quorum {
        threshold: held.threshold(),
        new_nodes: next
            .members()
            .filter(|m| m.entry.kind == MemberKind::Node && held.member(m.id()).is_none())
            .map(|m| m.id().to_owned())
            .collect(),
    }
}

/// The members whose signatures on `signed` are genuine, each with the key it signed with:
/// a key the member (of `held`, or a node `next` names anew) signs with on `made_on`, the day
/// the version was made. A signature of anyone else, a second one by the same member, or one
/// that is not genuine refuses the whole version.
fn genuine_signers(
    held: &Roster,
    next: &Roster,
    signed: &SignedRoster,
    made_on: Day,
) -> Result<BTreeMap<String, KeyId>, QuorumError> {
    if signed.signatures.len() > held.members().count() + next.members().count() {
        return Err(QuorumError::TooManySignatures);
    }
    let message = signed.message();
    let mut signers = BTreeMap::new();
    for signature in &signed.signatures {
        let member = match held.member(&signature.member) {
            Some(member) => member,
            None => next
                .member(&signature.member)
                .ok_or_else(|| QuorumError::ForeignSignature(printable(&signature.member)))?,
        };
        let bad = || QuorumError::BadSignature(member.id().to_owned());
        let key_id = KeyId(signature.key_id.clone());
        let key = member.key_in_use(&key_id, made_on).map_err(|_| bad())?;
        let bytes = data_encoding::BASE64
            .decode(signature.signature.as_bytes())
            .map_err(|_| bad())?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|_| bad())?;
        key.public_key
            .verify_strict(&message, &Signature::from_bytes(&bytes))
            .map_err(|_| bad())?;
        if signers.insert(member.id().to_owned(), key_id).is_some() {
            return Err(QuorumError::SignedTwice(member.id().to_owned()));
        }
    }
    Ok(signers)
}

/// A message that may quote another member's text, bounded for a log line.
fn printable_long(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// A name from another member, short and without control characters, for messages and logs.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// How far a version is from being adopted after `held`: its roster, who signed, who must.
#[derive(Debug)]
pub struct Tally {
    pub roster: Roster,
    pub changes: Vec<Change>,
    /// Who signed, with which key.
    pub signers: BTreeMap<String, KeyId>,
    pub needed: Needed,
}

impl Tally {
    /// Whether the signatures suffice.
    pub fn complete(&self, held: &Roster) -> Result<(), QuorumError> {
        match &self.needed {
            Needed::Owner(id) => {
                // Its newest key on that day: a key it retired cannot rotate the one after it.
                let current = self.roster.made_on().and_then(|day| {
                    held.member(id)
                        .and_then(|m| m.signing_key_on(day))
                        .map(|k| k.key_id.clone())
                });
                if current.is_some() && self.signers.get(id) == current.as_ref() {
                    Ok(())
                } else {
                    Err(QuorumError::OwnerUnsigned(id.clone()))
                }
            }
            Needed::Quorum {
                threshold,
                new_nodes,
            } => {
                let have = self
                    .signers
                    .keys()
                    .filter(|s| {
                        held.member(s)
                            .is_some_and(|m| m.entry.kind == MemberKind::Node)
                    })
                    .count();
                if have < *threshold {
                    return Err(QuorumError::TooFew {
                        have,
                        need: *threshold,
                        signers: self.signers.keys().cloned().collect::<Vec<_>>().join(", "),
                    });
                }
                match new_nodes.iter().find(|n| !self.signers.contains_key(*n)) {
                    Some(unsigned) => Err(QuorumError::NewMemberUnsigned(unsigned.clone())),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Reads `signed` against the version `held`: it must be the next version, and every signature
/// genuine and a member's. Whether the signatures suffice is [`Tally::complete`].
pub fn tally(held: &Roster, signed: &SignedRoster, today: Day) -> Result<Tally, QuorumError> {
    if signed.body.len() > MAX_BODY_BYTES {
        return Err(QuorumError::File {
            path: "the roster".into(),
            message: "too large".into(),
        });
    }
    let roster = signed.roster()?;
    if roster.version() <= held.version() {
        return Err(QuorumError::Rollback {
            held: held.version(),
            offered: roster.version(),
        });
    }
    if roster.version() != held.version() + 1 {
        return Err(QuorumError::NotNext {
            held: held.version(),
            offered: roster.version(),
        });
    }
    // A signed version names the text of the one it follows; one made on another version with
    // the same number is another branch (members signed two proposals): refused, not merged.
    // The hand-assembled version 0 differs from node to node and is not named.
    if held.version() > 0
        && let Some(held_hash) = held.text_hash()
        && roster.previous() != Some(held_hash.as_str())
    {
        return Err(QuorumError::OtherBranch(roster.version()));
    }
    let made_on = made_on(&roster, today)?;
    if held.made_on().is_some_and(|before| made_on < before) {
        return Err(QuorumError::MadeOn(format!(
            "made on {made_on}, before the version it follows"
        )));
    }
    let signers = genuine_signers(held, &roster, signed, made_on)?;
    Ok(Tally {
        changes: changes(held, &roster),
        needed: needed(held, &roster, made_on),
        roster,
        signers,
    })
}

/// The day a signed version was made: it must name one, and not a day after tomorrow.
fn made_on(roster: &Roster, today: Day) -> Result<Day, QuorumError> {
    let made_on = roster
        .made_on()
        .ok_or_else(|| QuorumError::MadeOn("a signed version names the day it was made".into()))?;
    if today
        .checked_add_days(1)
        .is_some_and(|tomorrow| made_on > tomorrow)
    {
        return Err(QuorumError::MadeOn(format!("{made_on} lies in the future")));
    }
    Ok(made_on)
}

/// The version after `held` that `signed` is, if its signatures suffice.
pub fn check_next(held: &Roster, signed: &SignedRoster, today: Day) -> Result<Roster, QuorumError> {
    let tally = tally(held, signed, today)?;
    tally.complete(held)?;
    Ok(tally.roster)
}

/// A roster taken on trust at a city's first install (it held nothing signed before): it must
/// name this node with its own entry, and carry enough genuine signatures by its own members'
/// keys for its own threshold. The operator compares the signers' fingerprints by phone.
pub fn check_first(
    own: &MemberEntry,
    signed: &SignedRoster,
    today: Day,
) -> Result<Roster, QuorumError> {
    let roster = signed.roster()?;
    if roster.member(&own.id).is_none_or(|m| &m.entry != own) {
        return Err(QuorumError::NotOurs(own.id.clone()));
    }
    let made_on = made_on(&roster, today)?;
    let signers = genuine_signers(&roster, &roster, signed, made_on)?;
    let have = signers
        .keys()
        .filter(|s| *s != &own.id)
        .filter(|s| {
            roster
                .member(s)
                .is_some_and(|m| m.entry.kind == MemberKind::Node)
        })
        .count();
    let need = roster
        .threshold()
        .min(roster.node_count().saturating_sub(1));
    if have < need {
        return Err(QuorumError::TooFew {
            have,
            need,
            signers: signers.into_keys().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(roster)
}

/// What an operator proposes to change.
#[derive(Clone, Debug, Default)]
pub struct Edits {
    /// Entries of cities that join.
    pub add: Vec<MemberEntry>,
    /// Entries that replace a member's (a new endpoint, a new CA).
    pub replace: Vec<MemberEntry>,
    /// Members that leave or are expelled.
    pub remove: Vec<String>,
    pub threshold: Option<u32>,
    /// (member, key id, day): what the key signed for later days is void.
    pub compromised: Vec<(String, String, Day)>,
}

/// The version after `held` with `edits` applied, made `today` (unsigned).
pub fn propose(held: &Roster, edits: &Edits, today: Day) -> Result<Roster, QuorumError> {
    let mut roster = held.clone();
    for entry in &edits.add {
        if roster.member(&entry.id).is_some() {
            return Err(QuorumError::Proposal(format!(
                "'{}' is a member already: propose --replace to change its entry",
                entry.id
            )));
        }
        roster = roster.upsert(entry.clone())?.0;
    }
    for entry in &edits.replace {
        if roster.member(&entry.id).is_none() {
            return Err(QuorumError::Proposal(format!(
                "'{}' is not a member: propose --add to let it join",
                entry.id
            )));
        }
        roster = roster.upsert(entry.clone())?.0;
    }
    for id in &edits.remove {
        roster = roster
            .without(id)?
            .ok_or_else(|| QuorumError::Proposal(format!("'{id}' is not a member")))?;
    }
    for (id, key_id, day) in &edits.compromised {
        let mut entry = roster
            .member(id)
            .ok_or_else(|| QuorumError::Proposal(format!("'{id}' is not a member")))?
            .entry
            .clone();
        let key = entry
            .signing_keys
            .iter_mut()
            .find(|k| &k.key_id == key_id)
            .ok_or_else(|| {
                QuorumError::Proposal(format!("'{id}' has no signing key '{key_id}'"))
            })?;
        key.compromised_from = Some(day.to_string());
        roster = roster.upsert(entry)?.0;
    }
    let threshold = edits.threshold.or(held.threshold_setting());
    let threshold =
        threshold.map(|t| t.min(u32::try_from(roster.node_count()).unwrap_or(u32::MAX)));
    let next = roster.with_version(held.version() + 1, threshold, today, held.text_hash())?;
    if changes(held, &next).is_empty() {
        return Err(QuorumError::Proposal("the proposal changes nothing".into()));
    }
    Ok(next)
}

/// What an operator reads before signing: the changes, who signed, who still must.
pub fn describe(held: &Roster, tally: &Tally) -> String {
    let mut text = format!(
        "roster version {} (this node holds version {}):\n",
        tally.roster.version(),
        held.version()
    );
    for change in &tally.changes {
        text.push_str(&format!("  {change}\n"));
    }
    let signers = if tally.signers.is_empty() {
        "nobody yet".to_owned()
    } else {
        tally.signers.keys().cloned().collect::<Vec<_>>().join(", ")
    };
    text.push_str(&format!("signed by: {signers}\n"));
    match &tally.needed {
        Needed::Owner(id) => text.push_str(&format!(
            "needs: the signature of '{id}' alone (its own routine key rotation)\n"
        )),
        Needed::Quorum {
            threshold,
            new_nodes,
        } => {
            text.push_str(&format!(
                "needs: {threshold} signatures of members of version {}",
                held.version()
            ));
            if !new_nodes.is_empty() {
                text.push_str(&format!(
                    " and those of the new members {}",
                    new_nodes.join(", ")
                ));
            }
            text.push('\n');
        }
    }
    text.push_str("fingerprints of the members' CA certificates in this version:\n");
    for member in tally.roster.members() {
        text.push_str(&format!("  {:<12} {}\n", member.id(), member.fingerprint()));
    }
    text
}

/// The adopted versions of a node, one file each beside its roster (`rosters/v000007.toml`).
#[derive(Clone, Debug)]
pub struct History {
    dir: PathBuf,
}

impl History {
    /// The history beside the roster file at `roster_path`.
    pub fn beside(roster_path: &Path) -> Self {
        let dir = roster_path
            .parent()
            .map_or_else(|| PathBuf::from("rosters"), |p| p.join("rosters"));
        Self { dir }
    }

    fn path(&self, version: u64) -> PathBuf {
        self.dir.join(format!("v{version:06}.toml"))
    }

    /// The newest version kept, if any.
    pub fn latest(&self) -> Option<u64> {
        std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_prefix('v')?.strip_suffix(".toml")?.parse().ok()
            })
            .max()
    }

    pub fn get(&self, version: u64) -> Option<SignedRoster> {
        SignedRoster::load(&self.path(version)).ok()
    }

    /// The kept versions after `version`, oldest first, at most `limit` and (beyond the first)
    /// at most [`MAX_ANSWER_BYTES`] of text.
    pub fn since(&self, version: u64, limit: usize) -> Vec<SignedRoster> {
        let Some(latest) = self.latest() else {
            return Vec::new();
        };
        let mut bytes = 0;
        (version.saturating_add(1)..=latest)
            .map_while(|v| self.get(v))
            .take(limit)
            .take_while(|signed| {
                let first = bytes == 0;
                bytes += signed.body.len();
                first || bytes <= MAX_ANSWER_BYTES
            })
            .collect()
    }

    /// Keeps `signed`, the version after `held`, and writes its body as the roster file: what
    /// `roster sign`/`adopt`, `key rotate` and the running node's loop do once a version was
    /// checked against `held`. Under a lock shared by them all: if another adopted a version
    /// meanwhile, this one is refused (unless it is that very version), so no two versions with
    /// one number are ever kept.
    pub fn adopt(
        &self,
        held: u64,
        signed: &SignedRoster,
        roster_path: &Path,
    ) -> Result<u64, QuorumError> {
        let file_error = |path: &Path, e: std::io::Error| QuorumError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let version = signed.roster()?.version();
        std::fs::create_dir_all(&self.dir).map_err(|e| file_error(&self.dir, e))?;
        let lock_path = self.dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| file_error(&lock_path, e))?;
        fs2::FileExt::lock_exclusive(&lock).map_err(|e| file_error(&lock_path, e))?;
        let on_disk = Roster::load(roster_path)
            .map(|r| r.version())
            .unwrap_or_default()
            .max(self.latest().unwrap_or_default());
        if on_disk != held {
            let _ = fs2::FileExt::unlock(&lock);
            return match self.get(version) {
                Some(kept) if kept.body == signed.body => Ok(version),
                _ => Err(QuorumError::Changed(on_disk)),
            };
        }
        signed.save(&self.path(version))?;
        let written = crate::files::write_atomically(roster_path, signed.body.as_bytes(), false)
            .map_err(|e| file_error(roster_path, e));
        let _ = fs2::FileExt::unlock(&lock);
        written.map(|()| version)
    }
}

/// The running node's side: takes up versions adopted on its own disk at once, and every
/// `interval` asks each member for versions after the one it holds, adopting each that
/// follows by the rule. `apply` puts a roster in force (the TLS verifiers and the node).
pub async fn run_sync(
    node: Arc<Node>,
    roster_path: PathBuf,
    interval: Duration,
    apply: impl Fn(Roster) -> Result<(), String> + Send + Sync,
    mut stop: watch::Receiver<bool>,
) {
    let history = History::beside(&roster_path);
    let mut last_asked = tokio::time::Instant::now() - interval;
    let mut last_wanted = tokio::time::Instant::now() - WANTED_AT_MOST_EVERY;
    let mut refused: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut local_failure = None;
    loop {
        take_local(&node, &history, &apply, &mut local_failure);
        if last_asked.elapsed() >= interval {
            last_asked = tokio::time::Instant::now();
            ask_members(&node, &history, &roster_path, &apply, &mut refused).await;
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(LOCAL_INTERVAL) => {}
            () = node.roster_wanted.notified() => {
                // Anyone can name an unknown key in a made-up voucher: ask early, but not often.
                if last_wanted.elapsed() >= WANTED_AT_MOST_EVERY {
                    last_wanted = tokio::time::Instant::now();
                    last_asked = tokio::time::Instant::now() - interval;
                }
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// A newer version on disk (an operator's `roster adopt` or `key rotate`), checked again here.
/// Failures are logged once each, not every second.
fn take_local(
    node: &Node,
    history: &History,
    apply: &(dyn Fn(Roster) -> Result<(), String> + Sync),
    last_failure: &mut Option<(u64, String)>,
) {
    let held = node.roster();
    let Some(latest) = history.latest().filter(|&v| v > held.version()) else {
        return;
    };
    let mut fail = |version: u64, error: String| {
        let failure = Some((version, error.clone()));
        if *last_failure != failure {
            tracing::error!(version, %error, "roster version on disk not adopted");
            *last_failure = failure;
        }
    };
    let mut roster = (*held).clone();
    for version in held.version() + 1..=latest {
        let Some(signed) = history.get(version) else {
            break;
        };
        match check_next(&roster, &signed, Day::today()) {
            Ok(next) if next.member(&node.id).is_some() => roster = next,
            Ok(_) => {
                fail(version, "it removes this node".into());
                break;
            }
            Err(error) => {
                fail(version, error.to_string());
                break;
            }
        }
    }
    if roster.version() > held.version() {
        let version = roster.version();
        let summary = summary(&held, &roster);
        match apply(roster) {
            Ok(()) => tracing::info!(version, changes = %summary, "roster version adopted"),
            Err(error) => fail(version, format!("not put in force: {error}")),
        }
    }
}

/// One member's answer to `RosterSince`, on its way.
type Asked<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    String,
                    Result<Vec<v1::SignedRoster>, crate::peers::PeerError>,
                ),
            > + Send
            + 'a,
    >,
>;

async fn ask_members(
    node: &Node,
    history: &History,
    roster_path: &Path,
    apply: &(dyn Fn(Roster) -> Result<(), String> + Sync),
    refused: &mut BTreeSet<(String, u64)>,
) {
    use futures::StreamExt;
    let held = node.roster();
    let version = held.version();
    // A few members at a time, each answer checked as it comes: memory stays bounded by a few
    // answers however many members there are.
    let asked: Vec<Asked<'_>> = held
        .members()
        .filter(|m| m.id() != node.id && m.entry.endpoint.is_some())
        .map(|member| -> Asked<'_> {
            Box::pin(async move {
                (
                    member.id().to_owned(),
                    node.peers.roster_since(member, version).await,
                )
            })
        })
        .collect();
    let mut answers = futures::stream::iter(asked).buffer_unordered(ASKED_AT_ONCE);
    let mut roster = (*held).clone();
    let mut adopted = Vec::new();
    if refused.len() > 1000 {
        refused.clear();
    }
    while let Some((peer, answer)) = answers.next().await {
        let versions = match answer {
            Ok(versions) => versions,
            Err(error) => {
                tracing::debug!(peer, %error, "a member's roster versions could not be asked for");
                continue;
            }
        };
        for signed in versions.into_iter().take(MAX_VERSIONS_PER_ANSWER) {
            let signed = SignedRoster::from_proto(signed);
            let offered = signed.roster().map(|r| r.version()).unwrap_or_default();
            if offered <= roster.version() {
                continue;
            }
            match check_next(&roster, &signed, Day::today()) {
                Ok(next) if next.member(&node.id).is_none() => {
                    if refused.insert((peer.clone(), offered)) {
                        tracing::error!(
                            peer,
                            version = offered,
                            "the members removed this node from the roster: it is no longer trusted by them"
                        );
                    }
                    break;
                }
                Ok(next) => {
                    roster = next;
                    adopted.push(signed);
                }
                Err(error) => {
                    if refused.insert((peer.clone(), offered)) {
                        let error = printable_long(&error.to_string());
                        tracing::warn!(peer, version = offered, %error, "a roster version offered by a member refused");
                    }
                    break;
                }
            }
        }
    }
    if adopted.is_empty() {
        return;
    }
    let mut version = held.version();
    for signed in &adopted {
        match history.adopt(version, signed, roster_path) {
            Ok(kept) => version = kept,
            Err(error) => {
                // An operator adopted one meanwhile: the next local round takes it up.
                tracing::warn!(%error, "a roster version from the members not kept");
                return;
            }
        }
    }
    let version = roster.version();
    let summary = summary(&held, &roster);
    match apply(roster) {
        Ok(()) => {
            tracing::info!(version, changes = %summary, "roster version adopted from the members")
        }
        Err(error) => tracing::error!(version, %error, "roster version not put in force"),
    }
}

fn summary(old: &Roster, new: &Roster) -> String {
    changes(old, new)
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
