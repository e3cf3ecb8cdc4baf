//! The roster: the members of the federation this node trusts, and nothing else.
//!
//! A member entry is the public part of a node (id, name, short-code prefix, endpoint, CA
//! certificate, voucher signing keys with their validity) as one TOML file that operators hand
//! to each other; the roster file is a list of them. There is no central authority: each node
//! trusts exactly the CAs and keys in its own roster.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use schein_proto::code::{prefix_key, validate_prefix};
use schein_proto::{Day, KeyId, v1};
use serde::{Deserialize, Serialize};

use crate::fees::FeeSchedule;
use crate::pki::validate_node_id;

/// Whether a member runs a node or only reads reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    Node,
    Funder,
}

/// One voucher signing key of a member, as written in its entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyEntry {
    pub key_id: String,
    /// The 32-byte ed25519 public key, hex.
    pub public_key: String,
    /// First day the key signs on (`YYYY-MM-DD`): a voucher's issue day is its first valid day.
    pub valid_from: String,
    /// Last day the key signs on; absent: still in use. What it signed stays valid after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Declared by the quorum: what the key signed for days after this one is void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised_from: Option<String>,
}

/// A CA a member rotated away from, and the last day certificates it signed are taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousCa {
    pub ca_cert: String,
    /// `YYYY-MM-DD`, inclusive.
    pub valid_until: String,
}

/// A member entry as exchanged between operators (`member.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    pub id: String,
    pub name: String,
    pub kind: MemberKind,
    /// Issuer prefix of the member's short codes, e.g. `LEJ`. Nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `https://host:port` of the member's node. Nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The member's CA certificate, PEM.
    pub ca_cert: String,
    /// CAs the member used before, still trusted to their last day while its certificates move
    /// to the new one.
    #[serde(default, rename = "previous_ca", skip_serializing_if = "Vec::is_empty")]
    pub previous_cas: Vec<PreviousCa>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKeyEntry>,
    /// What the member pays for, as issuer. Absent: schein's built-in schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_schedule: Option<FeeSchedule>,
    /// The most the member pays, as issuer. Absent: [`Limits::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// Ceilings an issuer publishes with its entry: redeemers refuse claims above them at once, and
/// the issuer, as the authority, rejects records above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Medication paid on one voucher in all, euro cents (medication is outside the cap).
    pub medication_per_voucher_cents: i64,
    /// The most one claim may ask for, euro cents.
    pub per_claim_cents: i64,
}

impl Default for Limits {
    /// EUR 500 of medication per voucher, EUR 2,500 per claim (three hospital days).
    fn default() -> Self {
        Self {
            medication_per_voucher_cents: 50_000,
            per_claim_cents: 250_000,
        }
    }
}

/// The roster file: its version, how many members must sign the next one, `[[member]]` tables.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    /// 0: assembled by hand before the members signed anything (founding); then 1, 2, ...
    #[serde(default)]
    version: u64,
    /// Signatures of members of this version a change to the next needs; absent: a majority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<u32>,
    /// The day the version was proposed (`YYYY-MM-DD`); the signatures' keys must sign on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    made_on: Option<String>,
    /// SHA-256 (hex) of the text of the version this one follows: a version made on another
    /// branch of the history is refused, so a split cannot go unnoticed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(default, rename = "member")]
    members: Vec<MemberEntry>,
}

/// Why a member entry or roster was refused.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid member entry or roster: {message}")]
    Syntax { path: String, message: String },
    #[error("member '{id}': {message}")]
    Invalid { id: String, message: String },
    #[error("the threshold {threshold} must be between 1 and the {nodes} member nodes")]
    Threshold { threshold: u32, nodes: usize },
    #[error("the roster's made_on: {0}")]
    MadeOn(String),
    #[error("the signing key {0} is listed twice")]
    DuplicateKey(String),
    #[error("two members have the id '{0}'")]
    DuplicateId(String),
    #[error("members '{0}' and '{1}' have short-code prefixes that read alike")]
    DuplicatePrefix(String, String),
    #[error("members '{0}' and '{1}' name the same CA certificate")]
    SharedCa(String, String),
}

fn invalid(id: &str, message: impl Into<String>) -> RosterError {
    RosterError::Invalid {
        id: id.to_owned(),
        message: message.into(),
    }
}

/// A signing key ready for verification.
#[derive(Clone, Debug)]
pub struct SigningKey {
    pub key_id: KeyId,
    pub public_key: VerifyingKey,
    pub valid_from: Day,
    pub valid_until: Option<Day>,
    pub compromised_from: Option<Day>,
}

impl SigningKey {
    /// Whether the key signs on `day`: inside its window, and not after a declared compromise.
    pub fn signs_on(&self, day: Day) -> bool {
        self.valid_from <= day
            && self.valid_until.is_none_or(|last| day <= last)
            && self.compromised_from.is_none_or(|from| day <= from)
    }
}

/// A validated member.
#[derive(Clone)]
pub struct Member {
    pub entry: MemberEntry,
    pub ca_cert: CertificateDer<'static>,
    /// SHA-256 of `ca_cert`: what a connection authenticated by this CA remembers.
    pub ca_fingerprint: [u8; 32],
    /// CAs rotated away from: certificate, fingerprint, last day trusted.
    pub previous_cas: Vec<(CertificateDer<'static>, [u8; 32], Day)>,
    pub signing_keys: Vec<SigningKey>,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.entry.id)
            .finish_non_exhaustive()
    }
}

impl Member {
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// The fee schedule this member pays by, as issuer.
    pub fn fee_schedule(&self) -> &FeeSchedule {
        static BUILTIN: std::sync::OnceLock<FeeSchedule> = std::sync::OnceLock::new();
        self.entry
            .fee_schedule
            .as_ref()
            .unwrap_or_else(|| BUILTIN.get_or_init(FeeSchedule::builtin))
    }

    /// Opens a document this member signed with one of its keys in use on `day`: the key named in
    /// the document is looked up first (read without trust), then the signature checked strictly.
    pub fn open<M: schein_proto::signed::NamesKey>(
        &self,
        bytes: &[u8],
        day: Day,
    ) -> Result<M, OpenError> {
        let claimed: M =
            schein_proto::signed::peek(bytes).map_err(|e| OpenError::Unreadable(e.to_string()))?;
        let key = self
            .key_in_use(&KeyId(claimed.key_id().to_owned()), day)
            .map_err(|_| OpenError::UnknownKey)?;
        schein_proto::signed::open(M::KIND, bytes, &key.public_key)
            .map_err(|e| OpenError::NotGenuine(e.to_string()))
    }

    /// The short code of one of this member's vouchers; empty for a member without a prefix.
    pub fn short_code(&self, serial: schein_proto::Serial) -> String {
        self.entry
            .prefix
            .as_deref()
            .and_then(|p| schein_proto::ShortCode::new(p, serial).ok())
            .map(|c| c.to_string())
            .unwrap_or_default()
    }

    /// Whether certificates the CA with `fingerprint` signed are taken on `day`: the current
    /// CA always, a previous one to its last day.
    pub fn trusts_ca(&self, fingerprint: &[u8; 32], day: Day) -> bool {
        &self.ca_fingerprint == fingerprint
            || self
                .previous_cas
                .iter()
                .any(|(_, f, last)| f == fingerprint && day <= *last)
    }

    /// Every CA certificate still trusted on `day` as PEM, the current one first: what a
    /// client of this member trusts its server certificate by.
    pub fn ca_bundle(&self, day: Day) -> String {
        let mut bundle = self.entry.ca_cert.clone();
        for (previous, (_, _, last)) in self.entry.previous_cas.iter().zip(&self.previous_cas) {
            if day <= *last {
                if !bundle.ends_with('\n') {
                    bundle.push('\n');
                }
                bundle.push_str(&previous.ca_cert);
            }
        }
        bundle
    }

    /// The ceilings this member pays by, as issuer.
    pub fn limits(&self) -> Limits {
        self.entry.limits.unwrap_or_default()
    }

    /// The key with `key_id`, if any.
    pub fn key(&self, key_id: &KeyId) -> Result<&SigningKey, KeyLookupError> {
        self.signing_keys
            .iter()
            .find(|k| &k.key_id == key_id)
            .ok_or(KeyLookupError::UnknownKey)
    }

    /// The key with `key_id`, if it signs on `day`: for receipts, records and statements, which
    /// are signed when they are made, and for vouchers, which are signed on their first day.
    pub fn key_in_use(&self, key_id: &KeyId, day: Day) -> Result<&SigningKey, KeyLookupError> {
        let key = self.key(key_id)?;
        if key.compromised_from.is_some_and(|from| from < day) {
            Err(KeyLookupError::Compromised)
        } else if key.signs_on(day) {
            Ok(key)
        } else {
            Err(KeyLookupError::OutsideWindow)
        }
    }

    /// The key that signs this member's vouchers issued on `day`: of the keys whose window holds
    /// it, the one that began last (a rotation's new key on the day both overlap).
    pub fn signing_key_on(&self, day: Day) -> Option<&SigningKey> {
        self.signing_keys
            .iter()
            .filter(|k| k.signs_on(day))
            .max_by_key(|k| k.valid_from)
    }

    /// SHA-256 of the CA certificate, grouped for reading aloud: operators compare it by phone
    /// before they add a member entry received by mail.
    pub fn fingerprint(&self) -> String {
        let hex = data_encoding::HEXUPPER.encode(&self.ca_fingerprint);
        hex.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn to_proto(&self) -> v1::Member {
        v1::Member {
            id: self.entry.id.clone(),
            name: self.entry.name.clone(),
            role: match self.entry.kind {
                MemberKind::Node => v1::MemberRole::Node,
                MemberKind::Funder => v1::MemberRole::Funder,
            } as i32,
            prefix: self.entry.prefix.clone().unwrap_or_default(),
            endpoint: self.entry.endpoint.clone().unwrap_or_default(),
            ca_cert_pem: self.entry.ca_cert.clone(),
            signing_keys: self
                .signing_keys
                .iter()
                .map(|k| v1::SigningKey {
                    key_id: k.key_id.0.clone(),
                    public_key: k.public_key.as_bytes().to_vec(),
                    valid_from: Some(k.valid_from.into()),
                    valid_until: k.valid_until.map(Into::into),
                    compromised_from: k.compromised_from.map(Into::into),
                })
                .collect(),
            medication_ceiling_cents: Some(self.limits().medication_per_voucher_cents),
            claim_ceiling_cents: Some(self.limits().per_claim_cents),
        }
    }
}

/// Why a document said to be signed by a member was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it cannot be read: {0}")]
    Unreadable(String),
    #[error("it names a key its sender does not use")]
    UnknownKey,
    #[error("it is not genuine: {0}")]
    NotGenuine(String),
}

/// Why no key was found for a voucher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    #[error("the issuer has no signing key with this id")]
    UnknownKey,
    #[error("the signing key was not in use when the voucher began")]
    OutsideWindow,
    #[error("the signing key was declared compromised before the voucher began")]
    Compromised,
}

impl MemberEntry {
    /// Checks the entry and prepares its certificate and keys.
    pub fn validate(&self) -> Result<Member, RosterError> {
        let id = &self.id;
        validate_node_id(id).map_err(|e| invalid(id, e.to_string()))?;
        if self.name.trim().is_empty() || self.name.len() > 80 {
            return Err(invalid(id, "the display name must have 1 to 80 characters"));
        }
        let read_ca = |pem: &str| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| invalid(id, format!("ca_cert is not a PEM certificate: {e}")))?;
            x509_parser::parse_x509_certificate(&der)
                .map_err(|e| invalid(id, format!("ca_cert cannot be read: {e}")))?;
            let fingerprint: [u8; 32] = {
                use sha2::Digest;
                sha2::Sha256::digest(der.as_ref()).into()
            };
            Ok::<_, RosterError>((der.into_owned(), fingerprint))
        };
        let (ca_cert, ca_fingerprint) = read_ca(&self.ca_cert)?;
        let previous_cas = self
            .previous_cas
            .iter()
            .map(|previous| {
                let (der, fingerprint) = read_ca(&previous.ca_cert)?;
                let last = Day::parse(&previous.valid_until)
                    .map_err(|e| invalid(id, format!("previous CA: {e}")))?;
                if fingerprint == ca_fingerprint {
                    return Err(invalid(id, "a previous CA is the current one"));
                }
                Ok((der, fingerprint, last))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signing_keys = self
            .signing_keys
            .iter()
            .map(|k| k.validate(id))
            .collect::<Result<Vec<_>, _>>()?;
        match self.kind {
            MemberKind::Node => {
                let prefix = self
                    .prefix
                    .as_deref()
                    .ok_or_else(|| invalid(id, "a node needs a short-code prefix"))?;
                validate_prefix(prefix).map_err(|e| invalid(id, format!("prefix: {e}")))?;
                let endpoint = self
                    .endpoint
                    .as_deref()
                    .ok_or_else(|| invalid(id, "a node needs an endpoint"))?;
                validate_endpoint(endpoint).map_err(|m| invalid(id, m))?;
                if signing_keys.is_empty() {
                    return Err(invalid(id, "a node needs at least one signing key"));
                }
            }
            MemberKind::Funder => {
                if !signing_keys.is_empty() {
                    return Err(invalid(id, "a funder has no voucher signing keys"));
                }
            }
        }
        if let Some(limits) = &self.limits {
            let sane = |cents: i64| (1..=schein_proto::money::MAX_CENTS).contains(&cents);
            if !sane(limits.medication_per_voucher_cents) || !sane(limits.per_claim_cents) {
                return Err(invalid(
                    id,
                    "limits must be between 1 cent and the largest amount",
                ));
            }
            if self.kind == MemberKind::Funder {
                return Err(invalid(id, "a funder pays nothing and has no limits"));
            }
        }
        if let Some(schedule) = &self.fee_schedule {
            schedule
                .validate()
                .map_err(|m| invalid(id, format!("fee schedule: {m}")))?;
        }
        if self.kind == MemberKind::Funder && self.prefix.is_some() {
            return Err(invalid(id, "a funder issues no vouchers and has no prefix"));
        }
        Ok(Member {
            entry: self.clone(),
            ca_cert,
            ca_fingerprint,
            previous_cas,
            signing_keys,
        })
    }

    /// Reads a member entry file.
    pub fn load(path: &Path) -> Result<Self, RosterError> {
        parse_toml(&read(path)?, &path.display().to_string())
    }

    /// Reads a member entry from its TOML text (what [`Self::load`] reads from a file).
    pub fn parse(text: &str) -> Result<Self, RosterError> {
        parse_toml(text, "the text")
    }

    pub fn to_toml(&self) -> String {
        let header = format!(
            "# schein member entry of '{}'. Public: hand it to the operators of the other nodes.\n",
            self.id
        );
        header + &toml::to_string(self).unwrap_or_default()
    }
}

/// `https://host:port`, as the node is reached from other nodes and from clients.
pub fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("https://")
        .ok_or_else(|| format!("endpoint '{endpoint}' must start with https://"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint '{endpoint}' needs a port (https://host:port)"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!("endpoint '{endpoint}' has no host"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .map(|_| ())
        .ok_or_else(|| format!("endpoint '{endpoint}' has an invalid port"))
}

impl SigningKeyEntry {
    fn validate(&self, member: &str) -> Result<SigningKey, RosterError> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(self.public_key.as_bytes())
            .map_err(|_| {
                invalid(
                    member,
                    format!("key {}: public_key is not hex", self.key_id),
                )
            })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            invalid(
                member,
                format!("key {}: public_key must be 32 bytes", self.key_id),
            )
        })?;
        let public_key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
            invalid(
                member,
                format!("key {}: not an ed25519 public key", self.key_id),
            )
        })?;
        if public_key.is_weak() {
            return Err(invalid(
                member,
                format!("key {}: weak public key", self.key_id),
            ));
        }
        if KeyId::of(&public_key).0 != self.key_id {
            return Err(invalid(
                member,
                format!("key {}: key_id does not match the public key", self.key_id),
            ));
        }
        let day = |text: &str| {
            Day::parse(text).map_err(|e| invalid(member, format!("key {}: {e}", self.key_id)))
        };
        let key = SigningKey {
            key_id: KeyId(self.key_id.clone()),
            public_key,
            valid_from: day(&self.valid_from)?,
            valid_until: self.valid_until.as_deref().map(day).transpose()?,
            compromised_from: self.compromised_from.as_deref().map(day).transpose()?,
        };
        if key.valid_until.is_some_and(|last| last < key.valid_from) {
            return Err(invalid(
                member,
                format!("key {}: its window ends before it begins", self.key_id),
            ));
        }
        Ok(key)
    }

    pub fn new(public_key: &VerifyingKey, valid_from: Day) -> Self {
        Self {
            key_id: KeyId::of(public_key).0,
            public_key: data_encoding::HEXLOWER.encode(public_key.as_bytes()),
            valid_from: valid_from.to_string(),
            valid_until: None,
            compromised_from: None,
        }
    }
}

/// The validated roster.
#[derive(Clone, Debug, Default)]
pub struct Roster {
    version: u64,
    threshold: Option<u32>,
    made_on: Option<Day>,
    previous: Option<String>,
    /// SHA-256 of the text this roster was read from, if it was read from one.
    text_hash: Option<[u8; 32]>,
    members: Vec<Member>,
    by_id: HashMap<String, usize>,
    by_prefix: HashMap<String, usize>,
}

impl Roster {
    pub fn from_entries(entries: Vec<MemberEntry>) -> Result<Self, RosterError> {
        let mut roster = Self::default();
        for entry in entries {
            let member = entry.validate()?;
            let index = roster.members.len();
            if roster
                .by_id
                .insert(member.entry.id.clone(), index)
                .is_some()
            {
                return Err(RosterError::DuplicateId(member.entry.id));
            }
            if let Some(prefix) = &member.entry.prefix
                && let Some(other) = roster.by_prefix.insert(prefix_key(prefix), index)
            {
                return Err(RosterError::DuplicatePrefix(
                    roster.members[other].entry.id.clone(),
                    member.entry.id,
                ));
            }
            let cas = |m: &Member| {
                std::iter::once(m.ca_fingerprint)
                    .chain(m.previous_cas.iter().map(|(_, f, _)| *f))
                    .collect::<Vec<_>>()
            };
            let mine = cas(&member);
            if let Some(other) = roster
                .members
                .iter()
                .find(|m| cas(m).iter().any(|f| mine.contains(f)))
            {
                return Err(RosterError::SharedCa(
                    other.entry.id.clone(),
                    member.entry.id,
                ));
            }
            for key in &member.signing_keys {
                let listed = roster
                    .members
                    .iter()
                    .chain(std::iter::once(&member))
                    .flat_map(|m| &m.signing_keys)
                    .filter(|k| k.key_id == key.key_id || k.public_key == key.public_key)
                    .count();
                if listed > 1 {
                    return Err(RosterError::DuplicateKey(key.key_id.0.clone()));
                }
            }
            roster.members.push(member);
        }
        Ok(roster)
    }

    fn from_file(file: RosterFile) -> Result<Self, RosterError> {
        let mut roster = Self::from_entries(file.members)?;
        roster.version = file.version;
        roster.threshold = file.threshold;
        roster.previous = file.previous;
        roster.made_on = file
            .made_on
            .as_deref()
            .map(Day::parse)
            .transpose()
            .map_err(|e| RosterError::MadeOn(e.to_string()))?;
        if let Some(threshold) = file.threshold {
            let nodes = roster.node_count();
            if threshold == 0 || threshold as usize > nodes {
                return Err(RosterError::Threshold { threshold, nodes });
            }
        }
        Ok(roster)
    }

    pub fn load(path: &Path) -> Result<Self, RosterError> {
        let text = read(path)?;
        let file: RosterFile = parse_toml(&text, &path.display().to_string())?;
        let mut roster = Self::from_file(file)?;
        roster.text_hash = Some(text_hash(&text));
        Ok(roster)
    }

    /// Reads and validates a roster from its TOML text (what [`Self::load`] reads from a file).
    pub fn parse(text: &str) -> Result<Self, RosterError> {
        let file: RosterFile = parse_toml(text, "the text")?;
        let mut roster = Self::from_file(file)?;
        roster.text_hash = Some(text_hash(text));
        Ok(roster)
    }

    /// SHA-256 (hex) of the text this roster was read from, if any: what the next version names
    /// as `previous`.
    pub fn text_hash(&self) -> Option<String> {
        self.text_hash.map(|h| data_encoding::HEXLOWER.encode(&h))
    }

    /// The version this one says it follows (SHA-256 of its text, hex).
    pub fn previous(&self) -> Option<&str> {
        self.previous.as_deref()
    }

    /// The roster file's text, as [`Self::save`] writes it.
    pub fn to_toml(&self) -> String {
        let file = RosterFile {
            version: self.version,
            threshold: self.threshold,
            made_on: self.made_on.map(|d| d.to_string()),
            previous: self.previous.clone(),
            members: self.members.iter().map(|m| m.entry.clone()).collect(),
        };
        format!(
            "# schein roster version {}: the members this node trusts. Change it with `schein-node roster`.\n{}",
            self.version,
            toml::to_string(&file).unwrap_or_default()
        )
    }

    /// 0 for a roster assembled by hand before the members signed one; then 1, 2, ...
    pub fn version(&self) -> u64 {
        self.version
    }

    /// This roster as another version with a threshold, proposed on `made_on`, following the
    /// version whose text has the SHA-256 `previous`.
    pub fn with_version(
        &self,
        version: u64,
        threshold: Option<u32>,
        made_on: Day,
        previous: Option<String>,
    ) -> Result<Self, RosterError> {
        Self::from_file(RosterFile {
            version,
            threshold,
            made_on: Some(made_on.to_string()),
            previous,
            members: self.members.iter().map(|m| m.entry.clone()).collect(),
        })
    }

    /// The day this version was proposed; absent for a hand-assembled roster.
    pub fn made_on(&self) -> Option<Day> {
        self.made_on
    }

    /// The threshold as written, if any.
    pub fn threshold_setting(&self) -> Option<u32> {
        self.threshold
    }

    /// How many members of this version must sign a change to the next: as written, else a
    /// majority of the member nodes (funders sign nothing).
    pub fn threshold(&self) -> usize {
        self.threshold
            .map_or(self.node_count() / 2 + 1, |t| t as usize)
    }

    /// The members that run a node (and so have keys to sign with).
    pub fn node_count(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.entry.kind == MemberKind::Node)
            .count()
    }

    /// Writes the roster to `path` atomically (write aside, then rename).
    pub fn save(&self, path: &Path) -> Result<(), RosterError> {
        let text = self.to_toml();
        crate::files::write_atomically(path, text.as_bytes(), false).map_err(|source| {
            RosterError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }

    /// Adds `entry`, or replaces the member with the same id. Returns whether one was replaced.
    pub fn upsert(&self, entry: MemberEntry) -> Result<(Self, bool), RosterError> {
        let mut entries: Vec<MemberEntry> = self.members.iter().map(|m| m.entry.clone()).collect();
        let replaced = match entries.iter_mut().find(|e| e.id == entry.id) {
            Some(existing) => {
                *existing = entry;
                true
            }
            None => {
                entries.push(entry);
                false
            }
        };
        let file = RosterFile {
            version: self.version,
            threshold: self.threshold,
            made_on: self.made_on.map(|d| d.to_string()),
            previous: self.previous.clone(),
            members: entries,
        };
        Ok((Self::from_file(file)?, replaced))
    }

    /// Removes the member `id`. Returns `None` if there was none.
    pub fn without(&self, id: &str) -> Result<Option<Self>, RosterError> {
        if !self.by_id.contains_key(id) {
            return Ok(None);
        }
        let members: Vec<MemberEntry> = self
            .members
            .iter()
            .filter(|m| m.entry.id != id)
            .map(|m| m.entry.clone())
            .collect();
        let nodes = members
            .iter()
            .filter(|m| m.kind == MemberKind::Node)
            .count();
        let nodes = u32::try_from(nodes).unwrap_or(u32::MAX).max(1);
        Self::from_file(RosterFile {
            version: self.version,
            threshold: self.threshold.map(|t| t.min(nodes)),
            made_on: self.made_on.map(|d| d.to_string()),
            previous: self.previous.clone(),
            members,
        })
        .map(Some)
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.by_id.get(id).map(|&i| &self.members[i])
    }

    /// The member whose short-code prefix reads like `prefix`.
    pub fn member_by_prefix(&self, prefix: &str) -> Option<&Member> {
        self.by_prefix
            .get(&prefix_key(prefix))
            .map(|&i| &self.members[i])
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }
}

/// Parses TOML `text` read from `origin` (a path, or "the text").
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, RosterError> {
    toml::from_str(text).map_err(|e| RosterError::Syntax {
        path: origin.to_owned(),
        message: e.to_string(),
    })
}

fn text_hash(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

fn read(path: &Path) -> Result<String, RosterError> {
    std::fs::read_to_string(path).map_err(|source| RosterError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey as Secret;

    use super::*;
    use crate::pki::NodeCa;

    fn entry(id: &str, prefix: &str, seed: u8) -> MemberEntry {
        let (_, ca) = NodeCa::generate(id).unwrap();
        let key = Secret::from_bytes(&[seed; 32]).verifying_key();
        MemberEntry {
            id: id.into(),
            name: id.to_uppercase(),
            kind: MemberKind::Node,
            prefix: Some(prefix.into()),
            endpoint: Some("https://127.0.0.1:7443".into()),
            ca_cert: ca.cert_pem,
            previous_cas: Vec::new(),
            signing_keys: vec![SigningKeyEntry::new(
                &key,
                Day::parse("2026-01-01").unwrap(),
            )],
            fee_schedule: None,
            limits: None,
        }
    }

    #[test]
    fn a_valid_roster_finds_members_by_id_and_prefix() {
        let roster =
            Roster::from_entries(vec![entry("leipzig", "LEJ", 1), entry("dresden", "DRS", 2)])
                .unwrap();
        assert_eq!(roster.member("dresden").unwrap().name(), "DRESDEN");
        assert_eq!(roster.member_by_prefix("lej").unwrap().id(), "leipzig");
        assert_eq!(
            roster.member_by_prefix("1EJ").unwrap().id(),
            "leipzig",
            "L reads as 1"
        );
        assert!(roster.member("hamburg").is_none());
        let fingerprint = roster.member("leipzig").unwrap().fingerprint();
        assert_eq!(fingerprint.len(), 64 + 15);
    }

    #[test]
    fn a_key_signs_inside_its_window_and_not_after_a_compromise() {
        let mut e = entry("leipzig", "LEJ", 1);
        e.signing_keys[0].valid_until = Some("2026-06-30".into());
        let next = Secret::from_bytes(&[9; 32]).verifying_key();
        let mut rotated = SigningKeyEntry::new(&next, Day::parse("2026-06-30").unwrap());
        rotated.compromised_from = Some("2026-09-01".into());
        e.signing_keys.push(rotated);
        let member = e.validate().unwrap();
        let old = member.signing_keys[0].key_id.clone();
        let new = member.signing_keys[1].key_id.clone();
        let day = |text: &str| Day::parse(text).unwrap();
        assert!(member.key_in_use(&old, day("2026-03-01")).is_ok());
        assert!(
            member.key_in_use(&old, day("2026-06-30")).is_ok(),
            "its last day"
        );
        assert_eq!(
            member.key_in_use(&old, day("2025-12-31")).err(),
            Some(KeyLookupError::OutsideWindow),
            "dated back before the key"
        );
        assert_eq!(
            member.key_in_use(&old, day("2026-07-01")).err(),
            Some(KeyLookupError::OutsideWindow),
            "after its window"
        );
        assert_eq!(
            member.signing_key_on(day("2026-06-30")).unwrap().key_id,
            new,
            "on the overlap day the new key signs"
        );
        assert_eq!(
            member.signing_key_on(day("2026-06-29")).unwrap().key_id,
            old
        );
        assert!(member.key_in_use(&new, day("2026-09-01")).is_ok());
        assert_eq!(
            member.key_in_use(&new, day("2026-09-02")).err(),
            Some(KeyLookupError::Compromised),
            "after the declared day"
        );
        assert!(member.signing_key_on(day("2026-09-02")).is_none());
        let unknown = KeyId("00000000".into());
        assert_eq!(
            member.key_in_use(&unknown, day("2026-03-01")).err(),
            Some(KeyLookupError::UnknownKey)
        );
        let mut backwards = entry("leipzig", "LEJ", 1);
        backwards.signing_keys[0].valid_until = Some("2025-01-01".into());
        assert!(
            backwards.validate().is_err(),
            "window ends before it begins"
        );
    }

    #[test]
    fn broken_entries_are_refused() {
        let good = entry("leipzig", "LEJ", 1);
        let mut cases: Vec<(&str, MemberEntry)> = Vec::new();
        let mut e = good.clone();
        e.signing_keys[0].public_key.pop();
        cases.push(("odd-length key", e));
        let mut e = good.clone();
        e.signing_keys[0].public_key.truncate(62);
        cases.push(("31-byte key", e));
        let mut e = good.clone();
        e.signing_keys[0].public_key = "zz".repeat(32);
        cases.push(("not hex", e));
        let mut e = good.clone();
        e.signing_keys[0].public_key = "00".repeat(32);
        cases.push(("weak key", e));
        let mut e = good.clone();
        e.signing_keys[0].key_id = "deadbeef".into();
        cases.push(("key id mismatch", e));
        let mut e = good.clone();
        e.signing_keys[0].valid_from = "soon".into();
        cases.push(("bad date", e));
        let mut e = good.clone();
        e.signing_keys.clear();
        cases.push(("node without key", e));
        let mut e = good.clone();
        e.ca_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
        cases.push(("garbage CA", e));
        let mut e = good.clone();
        e.endpoint = Some("http://x:1".into());
        cases.push(("plain http", e));
        let mut e = good.clone();
        e.prefix = Some("U".into());
        cases.push(("bad prefix", e));
        let mut e = good.clone();
        e.id = "Leipzig".into();
        cases.push(("bad id", e));
        let mut e = good.clone();
        e.kind = MemberKind::Funder;
        cases.push(("funder with signing key", e));
        let mut e = good.clone();
        e.kind = MemberKind::Funder;
        e.signing_keys.clear();
        e.endpoint = None;
        cases.push(("funder with prefix", e));
        for (what, e) in cases {
            assert!(e.validate().is_err(), "{what} accepted");
        }

        let duplicate_id = Roster::from_entries(vec![good.clone(), entry("leipzig", "LPZ", 2)]);
        assert!(matches!(duplicate_id, Err(RosterError::DuplicateId(_))));
        let alike_prefix = Roster::from_entries(vec![good, entry("lindau", "1EJ", 2)]);
        assert!(matches!(
            alike_prefix,
            Err(RosterError::DuplicatePrefix(..))
        ));
    }

    #[test]
    fn roster_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.toml");
        let roster = Roster::from_entries(vec![entry("leipzig", "LEJ", 1)]).unwrap();
        let (roster, replaced) = roster.upsert(entry("dresden", "DRS", 2)).unwrap();
        assert!(!replaced);
        roster.save(&path).unwrap();
        let loaded = Roster::load(&path).unwrap();
        assert_eq!(loaded.members().count(), 2);
        let (loaded, replaced) = loaded.upsert(entry("dresden", "DRS", 3)).unwrap();
        assert!(replaced);
        assert_eq!(loaded.members().count(), 2);
        assert!(loaded.without("hamburg").unwrap().is_none());
        assert_eq!(
            loaded
                .without("dresden")
                .unwrap()
                .unwrap()
                .members()
                .count(),
            1
        );
        std::fs::write(&path, "[[member]]\nid = \"x\"\nsurprise = 1\n").unwrap();
        assert!(matches!(
            Roster::load(&path),
            Err(RosterError::Syntax { .. })
        ));
    }
}
