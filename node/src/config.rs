//! The node's configuration: serde structs layered with the `config` crate (embedded defaults →
//! TOML file → `SCHEIN_*` environment variables), then validated into an immutable [`Config`]
//! with its key material and roster loaded, before any port is bound.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use schein_proto::code::validate_prefix;
use schein_proto::money::MAX_CENTS;
use serde::{Deserialize, Serialize};

use crate::pki::{CertifiedKey, validate_node_id};
use crate::roster::{Roster, validate_endpoint};

/// Name of the configuration file `init` writes.
pub const CONFIG_FILE: &str = "schein-node.toml";

/// The settings as written in the file or the environment. Paths are relative to the
/// configuration file's directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Node id, e.g. `leipzig`: lower case, used in certificates and on the wire.
    pub node_id: String,
    /// Display name, e.g. `Leipzig`.
    pub name: String,
    /// Issuer prefix of short codes, e.g. `LEJ`.
    pub prefix: String,
    /// Address and port to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Address and port of the web console (HTTPS); absent: no console.
    #[serde(default)]
    pub web_listen: Option<String>,
    /// How other nodes and clients reach this node: `https://host:port`.
    pub endpoint: String,
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "defaults::roster")]
    pub roster: PathBuf,
    #[serde(default = "defaults::signing_key")]
    pub signing_key: PathBuf,
    #[serde(default = "defaults::ca_cert")]
    pub ca_cert: PathBuf,
    #[serde(default = "defaults::ca_key")]
    pub ca_key: PathBuf,
    #[serde(default = "defaults::tls_cert")]
    pub tls_cert: PathBuf,
    #[serde(default = "defaults::tls_key")]
    pub tls_key: PathBuf,
    /// Treatment cap of a voucher when the office names none, in euro cents (EUR 500).
    #[serde(default = "defaults::default_cap_cents")]
    pub default_cap_cents: i64,
    /// The node's annual treatment budget, euro cents (Leipzig: about EUR 204,000).
    #[serde(default = "defaults::annual_budget_cents")]
    pub annual_budget_cents: i64,
    /// A cap raised above this (euro cents) needs a second, different office identity.
    #[serde(default = "defaults::second_approval_above_cents")]
    pub second_approval_above_cents: i64,
    /// Clock difference tolerated between this node and others when checking validity days.
    #[serde(default = "defaults::clock_skew_seconds")]
    pub clock_skew_seconds: u64,
    /// How long to wait for another node before answering "could not be reached".
    #[serde(default = "defaults::peer_timeout_ms")]
    pub peer_timeout_ms: u64,
    /// How often to witness each peer's ledger head, in seconds (0: never).
    #[serde(default = "defaults::witness_interval_seconds")]
    pub witness_interval_seconds: u64,
    /// How often to ask the other members for newer roster versions, in seconds (1 to 3600).
    #[serde(default = "defaults::roster_interval_seconds")]
    pub roster_interval_seconds: u64,
    /// Largest request accepted, in bytes.
    #[serde(default = "defaults::max_message_bytes")]
    pub max_message_bytes: usize,
    /// Log filter, e.g. `info` or `schein_node=debug,info`.
    #[serde(default = "defaults::log")]
    pub log: String,
}

mod defaults {
    use std::path::PathBuf;

    pub(super) fn listen() -> String {
        "127.0.0.1:7443".into()
    }
    pub(super) fn data_dir() -> PathBuf {
        "data".into()
    }
    pub(super) fn roster() -> PathBuf {
        "roster.toml".into()
    }
    pub(super) fn signing_key() -> PathBuf {
        "keys/signing.key".into()
    }
    pub(super) fn ca_cert() -> PathBuf {
        "keys/ca.pem".into()
    }
    pub(super) fn ca_key() -> PathBuf {
        "keys/ca.key".into()
    }
    pub(super) fn tls_cert() -> PathBuf {
        "keys/node.pem".into()
    }
    pub(super) fn tls_key() -> PathBuf {
        "keys/node.key".into()
    }
    pub(super) fn default_cap_cents() -> i64 {
        50_000
    }
    pub(super) fn annual_budget_cents() -> i64 {
        20_400_000
    }
    pub(super) fn second_approval_above_cents() -> i64 {
        100_000
    }
    pub(super) fn clock_skew_seconds() -> u64 {
        300
    }
    pub(super) fn peer_timeout_ms() -> u64 {
        3_000
    }
    pub(super) fn witness_interval_seconds() -> u64 {
        60
    }
    pub(super) fn roster_interval_seconds() -> u64 {
        30
    }
    pub(super) fn max_message_bytes() -> usize {
        64 * 1024
    }
    pub(super) fn log() -> String {
        "info".into()
    }
}

/// Every key of [`Settings`]; only these are taken from `SCHEIN_*` variables, so that the
/// CLI's own variables (such as `SCHEIN_IDENTITY`) never reach the node's configuration.
pub const SETTING_KEYS: &[&str] = &[
    "node_id",
    "name",
    "prefix",
    "listen",
    "web_listen",
    "endpoint",
    "data_dir",
    "roster",
    "signing_key",
    "ca_cert",
    "ca_key",
    "tls_cert",
    "tls_key",
    "default_cap_cents",
    "second_approval_above_cents",
    "annual_budget_cents",
    "clock_skew_seconds",
    "peer_timeout_ms",
    "witness_interval_seconds",
    "roster_interval_seconds",
    "max_message_bytes",
    "log",
];

/// Why the node cannot start with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {message}")]
    Load { path: String, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("cannot read {what} from {path}: {message}")]
    File {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("roster: {0}")]
    Roster(#[from] crate::roster::RosterError),
}

/// The validated configuration of a node, with its keys and roster loaded.
#[derive(Clone)]
pub struct Config {
    pub settings: Settings,
    /// Directory the relative paths were resolved against.
    pub base_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where the web console listens, if it is on.
    pub web_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub roster_path: PathBuf,
    pub ca_key_path: PathBuf,
    /// The key this node signs with today.
    pub signing_key: SigningKey,
    /// Every signing key of this node: the configured one and those `key rotate` made.
    pub signing_keys: Vec<SigningKey>,
    /// Where the signing keys are (`key rotate` writes `signing-KEYID.key` there).
    pub key_dir: PathBuf,
    pub tls: CertifiedKey,
    pub ca_cert_pem: String,
    pub roster: Roster,
    pub clock_skew: Duration,
    pub peer_timeout: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("node_id", &self.settings.node_id)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// Loads `path`, overlays `SCHEIN_*` environment variables, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let env = std::env::vars().filter_map(|(key, value)| {
            let setting = key.strip_prefix("SCHEIN_")?.to_ascii_lowercase();
            SETTING_KEYS
                .contains(&setting.as_str())
                .then_some((setting, value))
        });
        Self::load_with_env(path, env)
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let load_err = |message: String| ConfigError::Load {
            path: path.display().to_string(),
            message,
        };
        if !path.is_file() {
            return Err(load_err(
                "no such file (create a node with `schein-node init`)".into(),
            ));
        }
        let env_map: config::Map<String, String> = env
            .into_iter()
            .map(|(k, v)| (format!("SCHEIN_{}", k.to_ascii_uppercase()), v))
            .collect();
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("SCHEIN")
                    .prefix_separator("_")
                    .try_parsing(true)
                    .source(Some(env_map)),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| load_err(e.to_string()))?;
        let base_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::validate(settings, base_dir)
    }

    /// Checks `settings` and loads the files they name.
    pub fn validate(settings: Settings, base_dir: PathBuf) -> Result<Self, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        validate_node_id(&settings.node_id).map_err(|e| invalid(format!("node_id: {e}")))?;
        validate_prefix(&settings.prefix).map_err(|e| invalid(format!("prefix: {e}")))?;
        validate_endpoint(&settings.endpoint).map_err(invalid)?;
        let listen: SocketAddr = settings.listen.parse().map_err(|_| {
            invalid(format!(
                "listen: '{}' is not an address and port such as 0.0.0.0:7443",
                settings.listen
            ))
        })?;
        let web_listen = match settings.web_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(format!(
                    "web_listen: '{text}' is not an address and port such as 127.0.0.1:7444"
                ))
            })?),
        };
        if !(1..=MAX_CENTS).contains(&settings.default_cap_cents) {
            return Err(invalid(format!(
                "default_cap_cents must be between 1 and {MAX_CENTS}"
            )));
        }
        if !(0..=MAX_CENTS).contains(&settings.annual_budget_cents) {
            return Err(invalid(format!(
                "annual_budget_cents must be between 0 and {MAX_CENTS}"
            )));
        }
        if !(1..=MAX_CENTS).contains(&settings.second_approval_above_cents) {
            return Err(invalid(format!(
                "second_approval_above_cents must be between 1 and {MAX_CENTS}"
            )));
        }
        if !(100..=60_000).contains(&settings.peer_timeout_ms) {
            return Err(invalid(
                "peer_timeout_ms must be between 100 and 60000".into(),
            ));
        }
        if !(4096..=16 * 1024 * 1024).contains(&settings.max_message_bytes) {
            return Err(invalid(
                "max_message_bytes must be between 4096 and 16777216".into(),
            ));
        }
        if !(1..=3600).contains(&settings.roster_interval_seconds) {
            return Err(invalid(
                "roster_interval_seconds must be between 1 and 3600".into(),
            ));
        }
        if settings.clock_skew_seconds > 86_400 {
            return Err(invalid("clock_skew_seconds must be at most 86400".into()));
        }
        tracing_subscriber::EnvFilter::try_new(&settings.log)
            .map_err(|e| invalid(format!("log: '{}': {e}", settings.log)))?;

        let resolve = |p: &Path| base_dir.join(p);
        let signing_key = read_signing_key(&resolve(&settings.signing_key))?;
        let tls = CertifiedKey {
            cert_pem: read_file("the TLS certificate", &resolve(&settings.tls_cert))?,
            key_pem: read_file("the TLS key", &resolve(&settings.tls_key))?,
        };
        let ca_cert_pem = read_file("the CA certificate", &resolve(&settings.ca_cert))?;
        let roster_path = resolve(&settings.roster);
        let roster = Roster::load(&roster_path)?;
        let me = roster.member(&settings.node_id).ok_or_else(|| {
            invalid(format!(
                "the roster {} does not list this node '{}'",
                roster_path.display(),
                settings.node_id
            ))
        })?;
        if me.entry.ca_cert.trim() != ca_cert_pem.trim() {
            return Err(invalid(
                "the roster's entry for this node names another CA certificate".into(),
            ));
        }
        let key_dir = resolve(&settings.signing_key)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base_dir.clone());
        let keys = read_rotated_keys(&key_dir, signing_key)?;
        let today = schein_proto::Day::today();
        let listed = |key: &SigningKey| {
            me.signing_keys
                .iter()
                .find(|k| k.public_key == key.verifying_key())
        };
        if keys.iter().all(|k| listed(k).is_none()) {
            return Err(invalid(
                "the roster's entry for this node does not list its signing key".into(),
            ));
        }
        let signing_key = me
            .signing_key_on(today)
            .and_then(|k| keys.iter().find(|own| own.verifying_key() == k.public_key))
            .cloned()
            .ok_or_else(|| {
                invalid(format!(
                    "no signing key of this node signs on {today} (windows ended, or declared compromised): rotate the key with `schein-node key rotate` before running the node"
                ))
            })?;
        Ok(Self {
            listen,
            web_listen,
            data_dir: resolve(&settings.data_dir),
            ca_key_path: resolve(&settings.ca_key),
            roster_path,
            signing_key,
            signing_keys: keys,
            key_dir,
            tls,
            ca_cert_pem,
            roster,
            clock_skew: Duration::from_secs(settings.clock_skew_seconds),
            peer_timeout: Duration::from_millis(settings.peer_timeout_ms),
            base_dir,
            settings,
        })
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The signing key file holds the 32-byte ed25519 secret as hex on one line; `#` lines are
/// comments.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, ConfigError> {
    let text = read_file("the signing key", path)?;
    let hex: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<String>()
        .trim()
        .to_owned();
    let bad = |message: &str| ConfigError::File {
        what: "the signing key",
        path: path.display().to_string(),
        message: message.to_owned(),
    };
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|_| bad("not hex"))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("an ed25519 secret key has 32 bytes"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The configured key and every `signing-*.key` beside it, each once.
pub fn read_rotated_keys(
    dir: &Path,
    configured: SigningKey,
) -> Result<Vec<SigningKey>, ConfigError> {
    let mut keys = vec![configured];
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::File {
        what: "the key directory",
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("signing-") && n.ends_with(".key"))
        })
        .collect();
    paths.sort();
    for path in paths {
        let key = read_signing_key(&path)?;
        if !keys
            .iter()
            .any(|k| k.verifying_key() == key.verifying_key())
        {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Where `key rotate` keeps a new signing key.
pub fn rotated_key_path(dir: &Path, key: &SigningKey) -> PathBuf {
    dir.join(format!(
        "signing-{}.key",
        schein_proto::KeyId::of(&key.verifying_key()).0
    ))
}

/// The signing key file's text for `key`.
pub fn signing_key_file(key: &SigningKey) -> String {
    format!(
        "# schein voucher signing key (ed25519 secret). Never share it; back it up offline.\n{}\n",
        data_encoding::HEXLOWER.encode(key.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example configurations in `deploy/` stay in step with the settings.
    #[test]
    fn deploy_examples_parse() {
        for text in [
            include_str!("../../deploy/saxony/leipzig.toml"),
            include_str!("../../deploy/saxony/dresden.toml"),
            include_str!("../../deploy/saxony/chemnitz.toml"),
        ] {
            let settings: Settings = toml::from_str(text).unwrap();
            validate_node_id(&settings.node_id).unwrap();
            validate_prefix(&settings.prefix).unwrap();
            validate_endpoint(&settings.endpoint).unwrap();
        }
    }

    /// Every setting can come from the environment, and only settings do.
    #[test]
    fn setting_keys_name_every_setting() {
        let settings: Settings =
            toml::from_str(include_str!("../../deploy/saxony/leipzig.toml")).unwrap();
        let table = toml::Table::try_from(&settings).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut known = SETTING_KEYS.to_vec();
        known.sort_unstable();
        assert_eq!(keys, known);
    }
}
