//! Creating a node (`schein-node init`) and its client identities (`schein-node enroll`).
//!
//! `init` writes everything a node needs into one directory: signing key, CA, TLS certificate,
//! configuration, roster (with the node itself), its public member entry, and a first office
//! identity. Nothing is ever overwritten. `enroll_with_p12` adds the identity as a .p12 file
//! for browsers and key stores.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use schein_proto::Day;
use schein_proto::code::validate_prefix;
use schein_proto::voucher::MAX_BACKDATE_DAYS;

use crate::client::IdentityFile;
use crate::config::{CONFIG_FILE, Config, signing_key_file};
use crate::files::write_new;
use crate::p12::{P12Error, Password};
use crate::pki::{IdentityError, NodeCa, Role, Validity, validate_name, validate_node_id};
use crate::roster::{MemberEntry, MemberKind, Roster, SigningKeyEntry, validate_endpoint};

/// File name of the node's public member entry.
pub const MEMBER_FILE: &str = "member.toml";

/// Why a node or identity could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Roster(#[from] crate::roster::RosterError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error(transparent)]
    Register(#[from] crate::enrolled::RegisterError),
    #[error("cannot read the CA key {path}: {message}")]
    CaKey { path: String, message: String },
    #[error(
        "the identity {identity} was written, but not its .p12 file: {reason}; make one with `schein-node identity export {identity}`"
    )]
    P12 { identity: String, reason: P12Error },
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), SetupError> {
    write_new(path, text.as_bytes(), private).map_err(|source| SetupError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// What `init` needs to know.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub node_id: String,
    pub name: String,
    pub prefix: String,
    pub listen: String,
    pub endpoint: String,
    /// Where the web console listens; `None` leaves it off (a commented line says how).
    pub web_listen: Option<String>,
    /// Further DNS names for the node's certificate.
    pub hostnames: Vec<String>,
    /// Name of the first office identity.
    pub office_name: String,
}

/// The files `init` created that the operator needs next.
#[derive(Clone, Debug)]
pub struct Initialized {
    pub config_path: PathBuf,
    pub member_path: PathBuf,
    pub office_identity_path: PathBuf,
}

/// Creates a node in `options.dir`.
pub fn init(options: &InitOptions) -> Result<Initialized, SetupError> {
    validate_node_id(&options.node_id)?;
    validate_prefix(&options.prefix).map_err(|e| SetupError::Invalid(format!("prefix: {e}")))?;
    validate_endpoint(&options.endpoint).map_err(SetupError::Invalid)?;
    validate_name(&options.office_name)?;
    let name = options.name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(SetupError::Invalid(
            "the display name must have 1 to 80 characters and no control characters".into(),
        ));
    }
    options
        .listen
        .parse::<std::net::SocketAddr>()
        .map_err(|_| {
            SetupError::Invalid(format!(
                "listen: '{}' is not an address and port such as 0.0.0.0:7443",
                options.listen
            ))
        })?;
    for host in &options.hostnames {
        rustls::pki_types::ServerName::try_from(host.as_str())
            .map_err(|_| SetupError::Invalid(format!("'{host}' is not a host name")))?;
    }
    let dir = &options.dir;
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(SetupError::Invalid(format!(
            "{} exists already: this directory holds a node",
            config_path.display()
        )));
    }

    let signing_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let (ca, ca_pem) = NodeCa::generate(&options.node_id)?;
    let mut hostnames = options.hostnames.clone();
    if let Some(host) = endpoint_host(&options.endpoint) {
        hostnames.push(host);
    }
    hostnames.push("localhost".into());
    hostnames.retain(|h| h != &options.node_id);
    hostnames.sort();
    hostnames.dedup();
    let node_cert = ca.issue_node_cert(&hostnames, Validity::days_from_now(5 * 365))?;

    write(
        &dir.join("keys/signing.key"),
        &signing_key_file(&signing_key),
        true,
    )?;
    write(&dir.join("keys/ca.pem"), &ca_pem.cert_pem, false)?;
    write(&dir.join("keys/ca.key"), &ca_pem.key_pem, true)?;
    write(&dir.join("keys/node.pem"), &node_cert.cert_pem, false)?;
    write(&dir.join("keys/node.key"), &node_cert.key_pem, true)?;

    let key_from = Day::today()
        .checked_add_days(-MAX_BACKDATE_DAYS)
        .unwrap_or(Day::today());
    let member = MemberEntry {
        id: options.node_id.clone(),
        name: options.name.clone(),
        kind: MemberKind::Node,
        prefix: Some(options.prefix.to_ascii_uppercase()),
        endpoint: Some(options.endpoint.clone()),
        ca_cert: ca_pem.cert_pem.clone(),
        signing_keys: vec![SigningKeyEntry::new(&signing_key.verifying_key(), key_from)],
        fee_schedule: Some(crate::fees::FeeSchedule::builtin()),
        limits: Some(crate::roster::Limits::default()),
    };
    member.validate()?;
    let member_path = dir.join(MEMBER_FILE);
    write(&member_path, &member.to_toml(), false)?;
    Roster::from_entries(vec![member])?.save(&dir.join("roster.toml"))?;
    write(&config_path, &config_text(options), false)?;

    let config = Config::load_with_env(&config_path, [])?;
    let office_identity_path = dir
        .join("identities")
        .join(format!("office-{}.toml", options.office_name));
    enroll(
        &config,
        Role::Office,
        &options.office_name,
        365,
        &office_identity_path,
    )?;
    Ok(Initialized {
        config_path,
        member_path,
        office_identity_path,
    })
}

fn endpoint_host(endpoint: &str) -> Option<String> {
    let rest = endpoint.strip_prefix("https://")?;
    let (host, _) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // IP addresses are not DNS names; clients verify the node id anyway.
    (host.parse::<std::net::IpAddr>().is_err()).then(|| host.to_owned())
}

fn config_text(options: &InitOptions) -> String {
    format!(
        r#"# schein node configuration. Paths are relative to this file's directory.
# Every setting can be overridden by an environment variable SCHEIN_<SETTING>, e.g. SCHEIN_LISTEN.

node_id = {node_id}
name = {name}
# Issuer prefix of this node's short codes.
prefix = {prefix}
# Address and port the node listens on.
listen = {listen}
# How other nodes and this node's clients reach it.
endpoint = {endpoint}
# The web console (HTTPS, with the node's certificate; people sign in with their .p12 file).
{web_listen}

data_dir = "data"
roster = "roster.toml"
signing_key = "keys/signing.key"
ca_cert = "keys/ca.pem"
ca_key = "keys/ca.key"
tls_cert = "keys/node.pem"
tls_key = "keys/node.key"

# Treatment cap of a voucher when the office names none, in euro cents.
default_cap_cents = 50000
# A cap raised above this (euro cents) needs a second, different office identity.
second_approval_above_cents = 100000
# The node's annual treatment budget, in euro cents; reports warn when the forecast exceeds it.
annual_budget_cents = 20400000
# Clock difference tolerated between nodes when checking validity days.
clock_skew_seconds = 300
# How long to wait for another node before answering "could not be reached".
peer_timeout_ms = 3000
# How often to ask the other members for newer roster versions, in seconds.
roster_interval_seconds = 30
# Largest request accepted, in bytes.
max_message_bytes = 65536
log = "info"
"#,
        node_id = quoted(&options.node_id),
        name = quoted(options.name.trim()),
        prefix = quoted(&options.prefix.to_ascii_uppercase()),
        listen = quoted(&options.listen),
        endpoint = quoted(&options.endpoint),
        web_listen = match &options.web_listen {
            Some(addr) => format!("web_listen = {}", quoted(addr)),
            None => "# web_listen = \"0.0.0.0:8443\"".to_owned(),
        },
    )
}

/// `text` as a TOML string, quoted and escaped.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Issues a client identity for `role` and `name`, signed by the node's CA, valid for `days`,
/// and writes it to `out` (never overwriting).
pub fn enroll(
    config: &Config,
    role: Role,
    name: &str,
    days: u32,
    out: &Path,
) -> Result<IdentityFile, SetupError> {
    if role == Role::Node {
        return Err(SetupError::Invalid(
            "node certificates are made by `schein-node init`, not enrolled".into(),
        ));
    }
    if !(1..=3 * 366).contains(&days) {
        return Err(SetupError::Invalid(
            "validity must be 1 to 1098 days".into(),
        ));
    }
    let ca_key = std::fs::read_to_string(&config.ca_key_path).map_err(|e| SetupError::CaKey {
        path: config.ca_key_path.display().to_string(),
        message: e.to_string(),
    })?;
    let ca = NodeCa::load(config.node_id(), &config.ca_cert_pem, &ca_key)?;
    let validity = Validity::days_from_now(days);
    let valid_until = Day::from_date(validity.not_after.date());
    let cert = ca.issue_client_cert(role, name, validity)?;
    let identity = IdentityFile {
        node: config.node_id().to_owned(),
        node_name: config.settings.name.clone(),
        endpoint: config.settings.endpoint.clone(),
        role,
        name: name.to_owned(),
        certificate: cert.cert_pem,
        private_key: cert.key_pem,
        node_ca: config.ca_cert_pem.clone(),
    };
    identity.save_new(out)?;
    crate::enrolled::record(
        &config.base_dir,
        crate::enrolled::Enrolled {
            role,
            name: name.to_owned(),
            valid_until: valid_until.to_string(),
            fingerprint: crate::pki::fingerprint_of_pem(&identity.certificate)
                .map(|f| data_encoding::HEXLOWER.encode(&f)),
            revoked_on: None,
        },
    )?;
    Ok(identity)
}

/// A client identity enrolled together with its .p12 file.
#[derive(Debug)]
pub struct Enrollment {
    pub identity: IdentityFile,
    pub p12_path: PathBuf,
    /// The .p12 file's password: for its holder, shown once and stored nowhere.
    pub password: Password,
}

/// Like [`enroll`], and also writes the identity as a .p12 file beside `out` (same name,
/// extension `.p12`, owner-readable only) under a generated password, for signing into the web
/// console from a browser. Neither file is overwritten.
pub fn enroll_with_p12(
    config: &Config,
    role: Role,
    name: &str,
    days: u32,
    out: &Path,
) -> Result<Enrollment, SetupError> {
    let p12_path = out.with_extension("p12");
    if p12_path == out {
        return Err(SetupError::Invalid(format!(
            "{}: the identity file is TOML and must not end in .p12; its .p12 file goes beside it",
            out.display()
        )));
    }
    // Checked before the identity is issued, so that a refusal leaves nothing behind.
    if p12_path.exists() {
        return Err(SetupError::Invalid(format!(
            "{} exists already; refusing to overwrite it",
            p12_path.display()
        )));
    }
    let identity = enroll(config, role, name, days, out)?;
    let password = Password::generate();
    crate::p12::write_new(&identity, password.as_str(), &p12_path).map_err(|reason| {
        SetupError::P12 {
            identity: out.display().to_string(),
            reason,
        }
    })?;
    Ok(Enrollment {
        identity,
        p12_path,
        password,
    })
}
