//! The register of client identities this node's operator enrolled (`enrolled.toml` beside the
//! configuration): role, handle and last day of each certificate, appended by
//! `schein-node enroll`. It holds no key and nothing about a person, only the handles the
//! certificates carry. The node reads it to answer whether a provider exists, since an emergency
//! voucher is bound to one provider and must not be issued for a name nobody holds.

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

/// Adds `identity` to the register in `dir`, replacing an entry of the same role and name
/// (a renewed certificate).
pub fn record(dir: &Path, identity: Enrolled) -> Result<(), RegisterError> {
    let mut identities = load(dir)?;
    identities.retain(|i| !(i.role == identity.role && i.name == identity.name));
    identities.push(identity);
    identities.sort_by(|a, b| (a.role.as_str(), &a.name).cmp(&(b.role.as_str(), &b.name)));
    let text = format!(
        "# Identities enrolled at this node: handles only, no keys. Written by `schein-node enroll`.\n{}",
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

/// Whether a provider called `name` is enrolled in `dir` with a certificate valid on `today`.
pub fn provider_known(dir: &Path, name: &str, today: Day) -> Result<bool, RegisterError> {
    Ok(load(dir)?.iter().any(|i| {
        i.role == Role::Provider
            && i.name == name
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
        // Renewing replaces the entry.
        record(dir.path(), provider("alt", "2027-06-30")).unwrap();
        assert!(provider_known(dir.path(), "alt", today).unwrap());
        assert_eq!(load(dir.path()).unwrap().len(), 3);
    }
}
