//! The connection to one's own node, made from an identity file, and the translation of gRPC
//! failures into sentences a person at a desk can act on: the node's own sentence when it
//! refused with a reason, the client's when the call never reached it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use schein_node::client::IdentityFile;
use schein_proto::v1::ErrorReason;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A connected client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) identity: IdentityFile,
    pub(crate) endpoint: String,
    /// How long to wait for the node: to connect (TLS handshake included), then per answer.
    pub(crate) timeout: Duration,
    channel: Channel,
}

impl Client {
    pub(crate) async fn connect(
        identity: Option<PathBuf>,
        endpoint: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let path = identity.ok_or_else(|| {
            anyhow!("no identity: pass --identity FILE or set SCHEIN_IDENTITY (your node's operator makes one with `schein-node enroll`)")
        })?;
        let identity = IdentityFile::load(&path)?;
        Self::from_identity(identity, endpoint, timeout).await
    }

    pub(crate) async fn from_identity(
        identity: IdentityFile,
        endpoint: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = endpoint.unwrap_or_else(|| identity.endpoint.clone());
        let channel = identity
            .connect_within(Some(&endpoint), timeout)
            .await
            .map_err(|e| match e {
                schein_node::client::ClientError::NoAnswer { .. } => anyhow!("{e}"),
                _ => anyhow!("{e}. Is the node running, and is the address right?"),
            })?;
        let client = Self {
            identity,
            endpoint,
            timeout,
            channel,
        };
        crate::identity::warn_if_expiring(&client);
        Ok(client)
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn office(&self) -> OfficeClient<Channel> {
        OfficeClient::new(self.channel.clone())
    }

    pub(crate) fn provider(&self) -> ProviderClient<Channel> {
        ProviderClient::new(self.channel.clone())
    }

    /// Asks the node's health service; proves that the node accepts this identity.
    pub(crate) async fn status(&self) -> anyhow::Result<()> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let response = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map_err(|s| self.explain(&s))?;
        let serving = response.into_inner().status
            == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        if serving {
            Ok(())
        } else {
            Err(anyhow!(
                "the node at {} answers but is not serving",
                self.endpoint
            ))
        }
    }

    /// A sentence for a failed call.
    pub(crate) fn explain(&self, status: &Status) -> anyhow::Error {
        if timed_out(status) {
            return anyhow!(
                "the node at {} did not answer within {} s (--timeout): it may be hung or overloaded",
                self.endpoint,
                self.timeout.as_secs()
            );
        }
        explain(status, &self.endpoint)
    }
}

/// Whether a call failed because the client's own deadline passed.
fn timed_out(status: &Status) -> bool {
    status.code() == Code::DeadlineExceeded
        || (status.code() == Code::Cancelled && status.message().contains("Timeout expired"))
}

/// A sentence for a failed call to the node at `endpoint`.
pub(crate) fn explain(status: &Status, endpoint: &str) -> anyhow::Error {
    // A refusal made by a schein node carries its reason and a sentence that knows more than
    // the client can guess: "unavailable" from the own node means that *another* node (the
    // issuing office) could not be reached, and the sentence names it.
    if let Some(reason) = schein_proto::error::reason_of(status) {
        return match reason {
            ErrorReason::WrongRole | ErrorReason::WrongNode | ErrorReason::UnknownIdentity => {
                anyhow!("refused: {}", status.message())
            }
            ErrorReason::Storage | ErrorReason::Internal | ErrorReason::Unspecified => {
                anyhow!("the node could not do this: {}", status.message())
            }
            _ => anyhow!("{}", status.message()),
        };
    }
    // A refused client certificate surfaces on the client only as a dropped connection on the
    // first call (TLS 1.3 sends the alert after the client thinks it is connected).
    let dropped = std::error::Error::source(status).is_some()
        && matches!(
            status.code(),
            Code::Unknown | Code::Unavailable | Code::Internal
        );
    match status.code() {
        Code::Unavailable if status.message().contains("connect") => anyhow!(
            "cannot reach the node at {endpoint}: is it running, and is the address right? ({})",
            schein_node::error_chain(status)
        ),
        _ if dropped => anyhow!(
            "the node at {endpoint} closed the connection. Most likely it does not accept this identity's certificate: it must be issued by that node's operator and must not have expired. The node's log names the reason."
        ),
        Code::Unavailable => anyhow!(
            "cannot reach the node at {endpoint}: is it running, and is the address right? ({})",
            status.message()
        ),
        Code::DeadlineExceeded => anyhow!("the node at {endpoint} did not answer in time"),
        Code::PermissionDenied | Code::Unauthenticated => {
            anyhow!("refused: {}", status.message())
        }
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition => {
            anyhow!("{}", status.message())
        }
        _ => anyhow!("the node could not do this: {}", status.message()),
    }
}

/// Reads a code argument; `-` reads it from standard input (full codes are long).
pub(crate) fn read_code(code: &str) -> anyhow::Result<String> {
    if code == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the code from standard input")?;
        Ok(text.trim().to_owned())
    } else {
        Ok(code.trim().to_owned())
    }
}
