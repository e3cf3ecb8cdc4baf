//! The client side of a node: the identity file that `schein-node enroll` writes and the
//! `schein` CLI reads, and the mutual-TLS connection made from it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::pki::{CertifiedKey, Role};
use crate::tls::client_tls;

/// Everything a client needs to talk to its node, in one private TOML file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Id of the node that issued this identity and that it talks to.
    pub node: String,
    pub node_name: String,
    /// Where the node is reached: `https://host:port`.
    pub endpoint: String,
    pub role: Role,
    pub name: String,
    /// The client certificate (PEM).
    pub certificate: String,
    /// The client's private key (PEM). Keep this file private.
    pub private_key: String,
    /// The node's CA certificate (PEM): the only CA this client trusts.
    pub node_ca: String,
}

impl std::fmt::Debug for IdentityFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityFile")
            .field("node", &self.node)
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why an identity file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the identity file {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write the identity file {path}: {message}")]
    Write { path: String, message: String },
    #[error("the node's endpoint '{endpoint}' is not usable: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("cannot reach the node at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error(
        "the node at {endpoint} did not complete the connection within {seconds} s: it may be hung or overloaded"
    )]
    NoAnswer { endpoint: String, seconds: u64 },
}

/// How long a client waits for a node by default: to connect (TCP and the TLS handshake), and
/// then for each answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl IdentityFile {
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let read_err = |message: String| ClientError::Read {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| read_err(e.to_string()))
    }

    /// Writes the file readable by its owner only; never overwrites.
    pub fn save_new(&self, path: &Path) -> Result<(), ClientError> {
        crate::files::write_new(path, self.text().as_bytes(), true).map_err(|e| {
            ClientError::Write {
                path: path.display().to_string(),
                message: e.to_string(),
            }
        })
    }

    /// Replaces the file at `path` with this identity in one step (a renewed certificate):
    /// readers see the old file or the new one, never half of either.
    pub fn replace(&self, path: &Path) -> Result<(), ClientError> {
        crate::files::write_atomically(path, self.text().as_bytes(), true).map_err(|e| {
            ClientError::Write {
                path: path.display().to_string(),
                message: e.to_string(),
            }
        })
    }

    /// When the certificate expires, Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(self.certificate.as_bytes()).ok()?;
        crate::pki::not_after(&der)
    }

    fn text(&self) -> String {
        format!(
            "# schein identity: {} '{}' of node {}. Private: it holds a key.\n{}",
            self.role,
            self.name,
            self.node,
            toml::to_string(self).unwrap_or_default()
        )
    }

    pub fn certified_key(&self) -> CertifiedKey {
        CertifiedKey {
            cert_pem: self.certificate.clone(),
            key_pem: self.private_key.clone(),
        }
    }

    /// Connects to the node named in the file (or at `endpoint`, if given) over mutual TLS,
    /// waiting at most [`DEFAULT_TIMEOUT`] (see [`Self::connect_within`]).
    pub async fn connect(&self, endpoint: Option<&str>) -> Result<Channel, ClientError> {
        self.connect_within(endpoint, DEFAULT_TIMEOUT).await
    }

    /// Connects within `timeout`, TLS handshake included, and gives every call on the channel
    /// `timeout` for its answer: a node that accepts connections but never answers (hung,
    /// stopped, swapped out) costs its caller a bounded wait, never a hang.
    ///
    /// Under TLS 1.3 a refused client certificate shows only on the first call, not here.
    pub async fn connect_within(
        &self,
        endpoint: Option<&str>,
        timeout: Duration,
    ) -> Result<Channel, ClientError> {
        let endpoint = endpoint.unwrap_or(&self.endpoint).to_owned();
        let bad = |message: String| ClientError::Endpoint {
            endpoint: endpoint.clone(),
            message,
        };
        crate::roster::validate_endpoint(&endpoint).map_err(&bad)?;
        let configured = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .tls_config(client_tls(&self.node, &self.node_ca, &self.certified_key()))
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        let connecting = configured.connect();
        // The connect timeout above covers TCP only; a hung node completes that in the kernel
        // and then never answers the TLS handshake.
        match tokio::time::timeout(timeout, connecting).await {
            Ok(connected) => connected.map_err(|e| ClientError::Connect {
                endpoint: endpoint.clone(),
                message: crate::error_chain(&e),
            }),
            Err(_) => Err(ClientError::NoAnswer {
                endpoint,
                seconds: timeout.as_secs().max(1),
            }),
        }
    }
}
