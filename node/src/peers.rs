//! The federation client: this node's calls to other members, over mutual TLS with the node's
//! own certificate, trusting for each peer only that peer's CA. Connections are made lazily and
//! reused; a peer that is down costs one connect timeout, never a hang.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use schein_proto::Serial;
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::{
    ClosePeriodRequest, ClosePeriodResponse, ProviderKnownRequest, SettleRequest, StatementRequest,
    VoucherStatusRequest, VoucherStatusResponse, VoucherStatusesRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::pki::CertifiedKey;
use crate::roster::Member;
use crate::tls::client_tls;

/// Why a peer gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("member '{0}' has no endpoint")]
    NoEndpoint(String),
    #[error("cannot set up a connection to '{member}': {message}")]
    Setup { member: String, message: String },
    #[error("'{member}' did not answer: {status}")]
    Call {
        member: String,
        status: Box<tonic::Status>,
    },
}

struct CachedChannel {
    endpoint: String,
    ca_cert: String,
    channel: Channel,
}

/// Connections to the other members.
pub struct Peers {
    identity: CertifiedKey,
    timeout: Duration,
    max_message_bytes: usize,
    channels: Mutex<HashMap<String, CachedChannel>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Peers {
    pub fn new(identity: CertifiedKey, timeout: Duration, max_message_bytes: usize) -> Self {
        Self {
            identity,
            timeout,
            max_message_bytes,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// How long one call to another member may take, connecting included (twice the
    /// configured peer timeout).
    pub fn call_bound(&self) -> Duration {
        self.timeout * 2
    }

    /// A channel to `member`, reused while its endpoint and CA stay the same.
    fn channel(&self, member: &Member) -> Result<Channel, PeerError> {
        let id = member.id().to_owned();
        let endpoint = member
            .entry
            .endpoint
            .clone()
            .ok_or_else(|| PeerError::NoEndpoint(id.clone()))?;
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cached) = channels.get(&id)
            && cached.endpoint == endpoint
            && cached.ca_cert == member.entry.ca_cert
        {
            return Ok(cached.channel.clone());
        }
        let setup = |message: String| PeerError::Setup {
            member: id.clone(),
            message,
        };
        let channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| setup(e.to_string()))?
            .tls_config(client_tls(&id, &member.entry.ca_cert, &self.identity))
            .map_err(|e| setup(e.to_string()))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(
            id,
            CachedChannel {
                endpoint,
                ca_cert: member.entry.ca_cert.clone(),
                channel: channel.clone(),
            },
        );
        Ok(channel)
    }

    fn client(&self, member: &Member) -> Result<FederationClient<Channel>, PeerError> {
        Ok(FederationClient::new(self.channel(member)?)
            .max_decoding_message_size(self.max_message_bytes))
    }

    /// Asks `member` for its signed statement of `period` about this node.
    pub async fn statement(&self, member: &Member, period: &str) -> Result<Vec<u8>, PeerError> {
        let mut client = self.client(member)?;
        let call = client.statement(StatementRequest {
            period: period.to_owned(),
        });
        self.bounded(member, call)
            .await
            .map(|response| response.signed_statement)
    }

    /// Closes `period` with `member`: it records the close of the pair and answers with its
    /// final signed statement and its claim deadline for the period.
    pub async fn close_period(
        &self,
        member: &Member,
        period: &str,
        early: bool,
    ) -> Result<ClosePeriodResponse, PeerError> {
        let mut client = self.client(member)?;
        let call = client.close_period(ClosePeriodRequest {
            period: period.to_owned(),
            early,
        });
        self.bounded(member, call).await
    }

    /// Whether `member` has a provider called `name` enrolled.
    pub async fn provider_known(&self, member: &Member, name: &str) -> Result<bool, PeerError> {
        let mut client = self.client(member)?;
        let call = client.provider_known(ProviderKnownRequest {
            name: name.to_owned(),
        });
        self.bounded(member, call)
            .await
            .map(|response| response.known)
    }

    /// Sends a signed settlement record to `member`, the issuer; returns its signed receipt.
    pub async fn settle(
        &self,
        member: &Member,
        signed_record: Vec<u8>,
    ) -> Result<Vec<u8>, PeerError> {
        let mut client = self.client(member)?;
        let call = client.settle(SettleRequest { signed_record });
        self.bounded(member, call)
            .await
            .map(|response| response.signed_receipt)
    }

    /// Awaits a call within twice the peer timeout (the channel's own timeout covers the call;
    /// this one also covers a stuck connect).
    async fn bounded<T>(
        &self,
        member: &Member,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, PeerError> {
        let failed = |status: tonic::Status| PeerError::Call {
            member: member.id().to_owned(),
            status: Box::new(status),
        };
        match tokio::time::timeout(self.call_bound(), call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(failed(status)),
            Err(_) => Err(failed(tonic::Status::deadline_exceeded(
                "no answer in time",
            ))),
        }
    }

    /// Asks `member`, the issuer, about one of its vouchers.
    pub async fn voucher_status(
        &self,
        member: &Member,
        serial: Serial,
    ) -> Result<VoucherStatusResponse, PeerError> {
        let mut client = self.client(member)?;
        let request = VoucherStatusRequest {
            serial: serial.as_bytes().to_vec(),
        };
        self.bounded(member, client.voucher_status(request)).await
    }

    /// `member`'s answers about up to [`crate::domain::verify::MAX_BATCH`] of its vouchers, in order.
    pub async fn voucher_statuses(
        &self,
        member: &Member,
        serials: &[Serial],
    ) -> Result<Vec<VoucherStatusResponse>, PeerError> {
        let mut client = self.client(member)?;
        let request = VoucherStatusesRequest {
            serials: serials.iter().map(|s| s.as_bytes().to_vec()).collect(),
        };
        let response = self
            .bounded(member, client.voucher_statuses(request))
            .await?;
        Ok(response.statuses)
    }
}
