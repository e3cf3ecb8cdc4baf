//! The register of client identities this node's operator enrolled (`enrolled.toml` beside the
//! configuration): role, handle, last day and fingerprint of each certificate, appended by
//! `schein-node enroll`, and whether it was revoked (`schein-node identity revoke`). It holds no
//! key and nothing about a person, only the handles the certificates carry. The node reads it to
//! answer whether a provider exists (an emergency voucher is bound to one provider and must not
//! be issued for a name nobody holds) and which of its certificates it must refuse.

use std::path::{Path, PathBuf};

use schein_proto::Day;
use serde::{Deserialize, Serialize};

use crate::pki::Role;

/// File name of the register, in the node's directory.
pub const ENROLLED_FILE: &str = "enrolled.toml";

/// One enrolled identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolled {
    pub role: Role,
    pub name: String,
    /// Last day the certificate is valid (`YYYY-MM-DD`).
    pub valid_until: String,
    /// SHA-256 of the certificate's DER encoding, hex (absent in registers written before
    /// revocation existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The day it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_on: Option<String>,
}

impl Enrolled {
    /// `ROLE/NAME`, as `identity list` shows it and `identity revoke` takes it.
    pub fn handle(&self) -> String {
        format!("{}/{}", self.role, self.name)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFile {
    #[serde(default, rename = "identity")]
    identities: Vec<Enrolled>,
}

/// Why the register could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn path_in(dir: &Path) -> PathBuf {
    dir.join(ENROLLED_FILE)
}

/// Runs `change` on the register in `dir` under an exclusive lock (`enrolled.lock`), then saves
/// what it returns: the operator's `enroll` and `identity revoke` and the node's renewals write
/// the same file, and none may undo another's change.
fn change<T>(dir: &Path, change: impl FnOnce(&mut Vec<Enrolled>) -> T) -> Result<T, RegisterError> {
    let lock_path = dir.join("enrolled.lock");
    let write_err = |source: std::io::Error| RegisterError::Write {
        path: lock_path.display().to_string(),
        source,
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(write_err)?;
    fs2::FileExt::lock_exclusive(&lock).map_err(write_err)?;
    let mut identities = load(dir)?;
    let answer = change(&mut identities);
    let saved = save(dir, identities);
    let _ = fs2::FileExt::unlock(&lock);
    saved.map(|()| answer)
}

/// The identities enrolled at the node in `dir` (none if nothing was enrolled yet).
pub fn load(dir: &Path) -> Result<Vec<Enrolled>, RegisterError> {
    let path = path_in(dir);
    let read_err = |message: String| RegisterError::Read {
        path: path.display().to_string(),
        message,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(read_err(error.to_string())),
    };
    let file: RegisterFile = toml::from_str(&text).map_err(|e| read_err(e.to_string()))?;
    Ok(file.identities)
}

/// Adds `identity` to the register in `dir`. A renewed certificate is a new entry beside the
/// old one: both stay valid until they expire or are revoked. A revoked entry is never dropped.
pub fn record(dir: &Path, identity: Enrolled) -> Result<(), RegisterError> {
    change(dir, |identities| {
        identities.retain(|i| {
            i.revoked_on.is_some()
                || !(i.role == identity.role
                    && i.name == identity.name
                    && (i.fingerprint.is_none() || i.fingerprint == identity.fingerprint))
        });
        identities.push(identity);
    })
}

/// Why a renewal could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error("the certificate presented was revoked meanwhile")]
    Revoked,
    #[error(transparent)]
    Register(#[from] RegisterError),
}

/// Records a renewal in one step: `renewed` is added and the certificate with `presented`
/// revoked — unless that was revoked already (a second renewal with a stolen copy, or a
/// revocation that came first), which refuses the renewal.
pub fn renew(
    dir: &Path,
    presented: &[u8; 32],
    renewed: Enrolled,
    today: Day,
) -> Result<(), RenewalError> {
    let hex = data_encoding::HEXLOWER.encode(presented);
    let recorded = change(dir, |identities| {
        let mut old = identities
            .iter_mut()
            .filter(|i| i.fingerprint.as_deref() == Some(hex.as_str()));
        if let Some(entry) = old.next() {
            if entry.revoked_on.is_some() {
                return false;
            }
            entry.revoked_on = Some(today.to_string());
        }
        identities.push(renewed);
        true
    })?;
    if recorded {
        Ok(())
    } else {
        Err(RenewalError::Revoked)
    }
}

fn save(dir: &Path, mut identities: Vec<Enrolled>) -> Result<(), RegisterError> {
    identities.sort_by(|a, b| {
        (a.role.as_str(), &a.name, &a.valid_until).cmp(&(b.role.as_str(), &b.name, &b.valid_until))
    });
    let text = format!(
        "# Identities enrolled at this node: handles only, no keys. Written by `schein-node enroll`\n# and `schein-node identity revoke`.\n{}",
        toml::to_string(&RegisterFile { identities }).unwrap_or_default()
    );
    let path = path_in(dir);
    crate::files::write_atomically(&path, text.as_bytes(), false).map_err(|source| {
        RegisterError::Write {
            path: path.display().to_string(),
            source,
        }
    })
}

/// Why an identity could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no identity '{0}' is enrolled here (see `schein-node identity list`)")]
    Unknown(String),
    #[error("'{0}' names identities of several roles; say which: {1}")]
    Ambiguous(String, String),
    #[error(transparent)]
    Register(#[from] RegisterError),
}

/// Revokes every certificate enrolled as `handle` (`NAME` or `ROLE/NAME`) from `today` on.
/// Returns the entries revoked now (none if all were revoked already).
pub fn revoke(dir: &Path, handle: &str, today: Day) -> Result<Vec<Enrolled>, RevokeError> {
    let (role, name) = match handle.split_once('/') {
        Some((role, name)) => (Some(role), name),
        None => (None, handle),
    };
    change(dir, |identities| {
        let matches = |i: &Enrolled| i.name == name && role.is_none_or(|r| i.role.as_str() == r);
        let mut roles: Vec<&str> = identities
            .iter()
            .filter(|i| matches(i))
            .map(|i| i.role.as_str())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        match roles.len() {
            0 => return Err(RevokeError::Unknown(handle.to_owned())),
            1 => {}
            _ => {
                let choices = roles
                    .iter()
                    .map(|r| format!("{r}/{name}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(RevokeError::Ambiguous(handle.to_owned(), choices));
            }
        }
        let mut revoked = Vec::new();
        for identity in identities.iter_mut().filter(|i| matches(i)) {
            if identity.revoked_on.is_none() {
                identity.revoked_on = Some(today.to_string());
                revoked.push(identity.clone());
            }
        }
        Ok(revoked)
    })?
}

/// What a register revoked: certificates by fingerprint, and the handles of revoked entries
/// without a fingerprint (from registers older than revocation: refused by handle).
#[derive(Debug, Default)]
pub struct Revoked {
    pub fingerprints: Vec<[u8; 32]>,
    pub handles: Vec<(Role, String)>,
    /// Certificates enrolled with a fingerprint and not revoked: under a handle revoked as a
    /// whole (an entry from before fingerprints), these alone are still accepted.
    pub allowed: Vec<[u8; 32]>,
}

/// Every certificate revoked in `dir`.
pub fn revoked(dir: &Path) -> Result<Revoked, RegisterError> {
    let mut found = Revoked::default();
    // A certificate long past its last day is refused by its expiry anyway: not listed, so that
    // the list members exchange stays small.
    let long_ago = Day::today().checked_add_days(-30);
    for identity in load(dir)? {
        let parsed = identity
            .fingerprint
            .as_deref()
            .and_then(|f| data_encoding::HEXLOWER.decode(f.as_bytes()).ok())
            .and_then(|f| <[u8; 32]>::try_from(f).ok());
        let expired_long_ago = Day::parse(&identity.valid_until)
            .ok()
            .zip(long_ago)
            .is_some_and(|(last, limit)| last < limit);
        match (identity.revoked_on.is_some(), parsed) {
            (true, Some(fingerprint)) if !expired_long_ago => found.fingerprints.push(fingerprint),
            (true, Some(_)) => {}
            (true, None) => found.handles.push((identity.role, identity.name)),
            (false, Some(fingerprint)) => found.allowed.push(fingerprint),
            (false, None) => {}
        }
    }
    Ok(found)
}

/// Whether a provider called `name` is enrolled in `dir` with a certificate valid on `today`.
pub fn provider_known(dir: &Path, name: &str, today: Day) -> Result<bool, RegisterError> {
    Ok(load(dir)?.iter().any(|i| {
        i.role == Role::Provider
            && i.name == name
            && i.revoked_on.is_none()
            && Day::parse(&i.valid_until).is_ok_and(|last| today <= last)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, valid_until: &str) -> Enrolled {
        Enrolled {
            role: Role::Provider,
            name: name.into(),
            valid_until: valid_until.into(),
            fingerprint: Some(data_encoding::HEXLOWER.encode(&[valid_until.len() as u8; 32])),
            revoked_on: None,
        }
    }

    #[test]
    fn providers_are_known_while_their_certificate_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let today = Day::parse("2026-11-30").unwrap();
        assert!(!provider_known(dir.path(), "klinikum", today).unwrap());
        record(dir.path(), provider("klinikum", "2027-11-30")).unwrap();
        record(dir.path(), provider("alt", "2026-11-29")).unwrap();
        record(
            dir.path(),
            Enrolled {
                role: Role::Office,
                name: "team".into(),
                valid_until: "2027-01-01".into(),
                fingerprint: None,
                revoked_on: None,
            },
        )
        .unwrap();
        assert!(provider_known(dir.path(), "klinikum", today).unwrap());
        assert!(
            !provider_known(dir.path(), "alt", today).unwrap(),
            "expired"
        );
        assert!(
            !provider_known(dir.path(), "team", today).unwrap(),
            "not a provider"
        );
        // A renewed certificate is a second entry.
        let mut renewed = provider("alt", "2027-06-30");
        renewed.fingerprint = Some(data_encoding::HEXLOWER.encode(&[7; 32]));
        record(dir.path(), renewed).unwrap();
        assert!(provider_known(dir.path(), "alt", today).unwrap());
        assert_eq!(load(dir.path()).unwrap().len(), 4);
    }

    #[test]
    fn a_renewal_revokes_the_old_certificate_once_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let today = Day::parse("2026-11-30").unwrap();
        let old = provider("praxis", "2026-12-10");
        let presented: [u8; 32] = [10; 32];
        assert_eq!(
            old.fingerprint,
            Some(data_encoding::HEXLOWER.encode(&presented))
        );
        record(dir.path(), old).unwrap();
        let mut renewed = provider("praxis", "2027-02-28");
        renewed.fingerprint = Some(data_encoding::HEXLOWER.encode(&[11; 32]));
        renew(dir.path(), &presented, renewed.clone(), today).unwrap();
        assert_eq!(revoked(dir.path()).unwrap().fingerprints, vec![presented]);
        // The same old certificate again (a stolen copy): refused, nothing recorded.
        assert!(matches!(
            renew(dir.path(), &presented, renewed, today),
            Err(RenewalError::Revoked)
        ));
        assert_eq!(load(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn revoking_a_handle_revokes_every_certificate_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let today = Day::parse("2026-11-30").unwrap();
        record(dir.path(), provider("praxis", "2027-01-01")).unwrap();
        let mut second = provider("praxis", "2027-06-30");
        second.fingerprint = Some(data_encoding::HEXLOWER.encode(&[9; 32]));
        record(dir.path(), second).unwrap();
        let mut office = provider("praxis", "2027-06-30");
        office.role = Role::Office;
        office.fingerprint = None;
        record(dir.path(), office).unwrap();

        assert!(matches!(
            revoke(dir.path(), "praxis", today),
            Err(RevokeError::Ambiguous(..))
        ));
        assert!(matches!(
            revoke(dir.path(), "provider/nobody", today),
            Err(RevokeError::Unknown(_))
        ));
        assert_eq!(
            revoke(dir.path(), "provider/praxis", today).unwrap().len(),
            2
        );
        assert!(
            revoke(dir.path(), "provider/praxis", today)
                .unwrap()
                .is_empty(),
            "once"
        );
        assert!(!provider_known(dir.path(), "praxis", today).unwrap());
        let found = revoked(dir.path()).unwrap();
        assert_eq!(found.fingerprints.len(), 2);
        assert!(found.handles.is_empty());
        revoke(dir.path(), "office/praxis", today).unwrap();
        assert_eq!(
            revoked(dir.path()).unwrap().handles,
            vec![(Role::Office, "praxis".to_owned())]
        );
        // Enrolled again after its old entry (without a fingerprint) was revoked: the revoked
        // entry stays, and only the new certificate is allowed under that handle.
        let mut again = provider("praxis", "2027-09-30");
        again.role = Role::Office;
        again.fingerprint = Some(data_encoding::HEXLOWER.encode(&[5; 32]));
        record(dir.path(), again).unwrap();
        let found = revoked(dir.path()).unwrap();
        assert_eq!(found.handles, vec![(Role::Office, "praxis".to_owned())]);
        assert!(found.allowed.contains(&[5; 32]));
    }
}
