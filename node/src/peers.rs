//! The federation client: this node's calls to other members, over mutual TLS with the node's
//! own certificate, trusting for each peer only that peer's CA. Connections are made lazily and
//! reused; a peer that is down costs one connect timeout, never a hang. Settlement records for
//! one issuer that wait at the same time travel together in one `SettleBatch` call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use schein_proto::Serial;
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::reports_client::ReportsClient;
use schein_proto::v1::{
    ClosePeriodRequest, ClosePeriodResponse, ErrorReason, LedgerProofRequest, LedgerProofResponse,
    NodeReport, ProviderKnownRequest, ReceiptsForRequest, ReceiptsForResponse, ReportRequest,
    RevokedIdentitiesRequest, SettleBatchRequest, SettleRequest, StatementRequest,
    VoucherStatusRequest, VoucherStatusResponse, VoucherStatusesRequest,
};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Channel, Endpoint};

use crate::pki::CertifiedKey;
use crate::roster::Member;
use crate::tls::client_tls;

/// Names this node's wire version on every federation call.
type StampFn = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
type Stamped = tonic::service::interceptor::InterceptedService<Channel, StampFn>;

fn stamp_wire_version(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    schein_proto::version::stamp(request.metadata_mut());
    Ok(request)
}

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
    /// Settlement records waiting to go to this member in the next batch.
    settle_queue: Option<mpsc::UnboundedSender<PendingRecord>>,
}

/// A record on its way to its issuer, and who waits for the answer.
type PendingRecord = (Vec<u8>, oneshot::Sender<Result<Vec<u8>, PeerError>>);

/// Most records sent in one `SettleBatch` call: well inside a message's size limit.
const SETTLE_BATCH: usize = 128;

/// Connections to the other members.
pub struct Peers {
    identity: CertifiedKey,
    timeout: Duration,
    max_message_bytes: usize,
    channels: Mutex<HashMap<String, CachedChannel>>,
    /// Per member, whether its last call was answered (any answer, a refusal included): the
    /// metrics' count of reachable peers.
    answered: Mutex<HashMap<String, bool>>,
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
            answered: Mutex::new(HashMap::new()),
        }
    }

    /// How many of `members` answered their last call (members not called yet do not count).
    pub fn reachable<'a>(&self, members: impl IntoIterator<Item = &'a str>) -> usize {
        let answered = self
            .answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        members
            .into_iter()
            .filter(|id| answered.get(*id).copied().unwrap_or(false))
            .count()
    }

    /// Notes whether `member` answered: any status but "unavailable" or "no answer in time"
    /// came from the member itself.
    fn note_answer<T>(&self, member: &str, result: &Result<T, PeerError>) {
        let answered = match result {
            Ok(_) => true,
            Err(PeerError::Call { status, .. }) => !matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
            ),
            Err(_) => false,
        };
        self.answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(member.to_owned(), answered);
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
        let ca_bundle = member.ca_bundle(schein_proto::Day::today());
        if let Some(cached) = channels.get(&id)
            && cached.endpoint == endpoint
            && cached.ca_cert == ca_bundle
        {
            return Ok(cached.channel.clone());
        }
        let setup = |message: String| PeerError::Setup {
            member: id.clone(),
            message,
        };
        let channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| setup(e.to_string()))?
            .tls_config(client_tls(&id, &ca_bundle, &self.identity))
            .map_err(|e| setup(e.to_string()))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(
            id,
            CachedChannel {
                endpoint,
                ca_cert: ca_bundle,
                channel: channel.clone(),
                settle_queue: None,
            },
        );
        Ok(channel)
    }

    /// The queue of records for `member`, with the task that sends them in batches: started on
    /// first use, and again with a new channel when the member's endpoint or CA changed.
    fn settle_queue(
        &self,
        member: &Member,
    ) -> Result<mpsc::UnboundedSender<PendingRecord>, PeerError> {
        let channel = self.channel(member)?;
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cached = channels
            .get_mut(member.id())
            .ok_or_else(|| PeerError::NoEndpoint(member.id().to_owned()))?;
        if let Some(queue) = &cached.settle_queue
            && !queue.is_closed()
        {
            return Ok(queue.clone());
        }
        let (queue, pending) = mpsc::unbounded_channel();
        let client =
            FederationClient::new(channel).max_decoding_message_size(self.max_message_bytes);
        tokio::spawn(send_batches(
            member.id().to_owned(),
            client,
            self.call_bound(),
            pending,
        ));
        cached.settle_queue = Some(queue.clone());
        Ok(queue)
    }

    fn client(&self, member: &Member) -> Result<FederationClient<Stamped>, PeerError> {
        Ok(
            FederationClient::with_interceptor(
                self.channel(member)?,
                stamp_wire_version as StampFn,
            )
            .max_decoding_message_size(self.max_message_bytes),
        )
    }

    /// Bytes of claims a statement's page may hold so that the answer stays within this node's
    /// message size limit (the rest is the page's frame and signature).
    fn page_bytes(&self) -> u32 {
        u32::try_from(self.max_message_bytes.saturating_mul(3) / 4).unwrap_or(u32::MAX)
    }

    /// Asks `member` for a page of its signed statement of `period` about this node, from
    /// `page_token` on, of at most `page_limit` claims (0: all in one).
    pub async fn statement(
        &self,
        member: &Member,
        period: &str,
        page_token: &str,
        page_limit: u32,
    ) -> Result<Vec<u8>, PeerError> {
        let mut client = self.client(member)?;
        let call = client.statement(StatementRequest {
            period: period.to_owned(),
            page_token: page_token.to_owned(),
            page_limit,
            page_bytes: self.page_bytes(),
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
        page_limit: u32,
    ) -> Result<ClosePeriodResponse, PeerError> {
        let mut client = self.client(member)?;
        let call = client.close_period(ClosePeriodRequest {
            period: period.to_owned(),
            early,
            page_limit,
            page_bytes: self.page_bytes(),
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

    /// `member`'s ledger from entry `from_seq`, events left out, and its signed head.
    pub async fn ledger_proof(
        &self,
        member: &Member,
        from_seq: u64,
        limit: u32,
    ) -> Result<LedgerProofResponse, PeerError> {
        let mut client = self.client(member)?;
        let call = client.ledger_proof(LedgerProofRequest { from_seq, limit });
        self.bounded(member, call).await
    }

    /// The receipts this node signed that `member` holds, a page after `after`.
    pub async fn receipts_for(
        &self,
        member: &Member,
        after: &[u8],
        limit: u32,
    ) -> Result<ReceiptsForResponse, PeerError> {
        let mut client = self.client(member)?;
        let call = client.receipts_for(ReceiptsForRequest {
            after: after.to_vec(),
            limit,
        });
        self.bounded(member, call).await
    }

    /// `member`'s signed list of the client certificates it revoked.
    pub async fn revoked_identities(&self, member: &Member) -> Result<Vec<u8>, PeerError> {
        let mut client = self.client(member)?;
        let call = client.revoked_identities(RevokedIdentitiesRequest {});
        self.bounded(member, call)
            .await
            .map(|response| response.signed_list)
    }

    /// The roster versions `member` adopted after `version`, oldest first.
    pub async fn roster_since(
        &self,
        member: &Member,
        version: u64,
    ) -> Result<Vec<schein_proto::v1::SignedRoster>, PeerError> {
        // A roster of many members is larger than any other message: its own limit.
        let mut client = FederationClient::new(self.channel(member)?)
            .max_decoding_message_size(crate::quorum::MAX_ANSWER_BYTES + (1 << 20));
        let call = client.roster_since(schein_proto::v1::RosterSinceRequest { version });
        self.bounded(member, call)
            .await
            .map(|response| response.versions)
    }

    /// `member`'s report for `period`, as it gives it to funders.
    pub async fn report(&self, member: &Member, period: &str) -> Result<NodeReport, PeerError> {
        let mut client = ReportsClient::new(self.channel(member)?)
            .max_decoding_message_size(self.max_message_bytes);
        let call = client.report(ReportRequest {
            period: period.to_owned(),
        });
        self.bounded(member, call).await
    }

    /// Sends a signed settlement record to `member`, the issuer; returns its signed receipt.
    /// Records for the same issuer that wait at the same time go in one `SettleBatch` call, which
    /// the issuer decides in one transaction; each answer is the one `Settle` would give.
    pub async fn settle(
        &self,
        member: &Member,
        signed_record: Vec<u8>,
    ) -> Result<Vec<u8>, PeerError> {
        let (answer, answered) = oneshot::channel();
        let stopped = || PeerError::Call {
            member: member.id().to_owned(),
            status: Box::new(tonic::Status::unavailable(
                "the delivery to this member stopped",
            )),
        };
        self.settle_queue(member)?
            .send((signed_record, answer))
            .map_err(|_| stopped())?;
        let result = answered.await.map_err(|_| stopped())?;
        self.note_answer(member.id(), &result);
        result
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
        let result = match tokio::time::timeout(self.call_bound(), call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(failed(status)),
            Err(_) => Err(failed(tonic::Status::deadline_exceeded(
                "no answer in time",
            ))),
        };
        self.note_answer(member.id(), &result);
        result
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

/// Sends the records queued for one issuer, as many as wait at once in each call, until the
/// queue is dropped (the member's channel was replaced, or the node stops).
async fn send_batches(
    member: String,
    mut client: FederationClient<Channel>,
    bound: Duration,
    mut pending: mpsc::UnboundedReceiver<PendingRecord>,
) {
    let failed = |status: tonic::Status| PeerError::Call {
        member: member.clone(),
        status: Box::new(status),
    };
    // An issuer of an earlier version has no SettleBatch: then one record per call.
    let mut batches = true;
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < SETTLE_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (records, waiting): (Vec<Vec<u8>>, Vec<_>) = batch.into_iter().unzip();
        let answers: Vec<Result<Vec<u8>, PeerError>> = if batches {
            let call = client.settle_batch(SettleBatchRequest {
                signed_records: records.clone(),
            });
            match tokio::time::timeout(bound, call).await {
                Ok(Ok(response)) if response.get_ref().answers.len() == records.len() => response
                    .into_inner()
                    .answers
                    .into_iter()
                    .map(|answer| match ErrorReason::try_from(answer.refusal) {
                        Ok(ErrorReason::Unspecified) if !answer.signed_receipt.is_empty() => {
                            Ok(answer.signed_receipt)
                        }
                        reason => Err(failed(schein_proto::error::refusal(
                            reason.unwrap_or(ErrorReason::Unspecified),
                            answer.message,
                        ))),
                    })
                    .collect(),
                Ok(Ok(_)) => records
                    .iter()
                    .map(|_| {
                        Err(failed(tonic::Status::internal(
                            "the issuer answered for other records than sent",
                        )))
                    })
                    .collect(),
                Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                    batches = false;
                    one_by_one(&mut client, &records, bound, &failed).await
                }
                Ok(Err(status)) => records
                    .iter()
                    .map(|_| Err(failed(status.clone())))
                    .collect(),
                Err(_) => records
                    .iter()
                    .map(|_| {
                        Err(failed(tonic::Status::deadline_exceeded(
                            "no answer in time",
                        )))
                    })
                    .collect(),
            }
        } else {
            one_by_one(&mut client, &records, bound, &failed).await
        };
        for (answer, waiting) in answers.into_iter().zip(waiting) {
            let _ = waiting.send(answer);
        }
    }
}

/// The records sent with `Settle`, one call each.
async fn one_by_one(
    client: &mut FederationClient<Channel>,
    records: &[Vec<u8>],
    bound: Duration,
    failed: &impl Fn(tonic::Status) -> PeerError,
) -> Vec<Result<Vec<u8>, PeerError>> {
    let mut answers = Vec::with_capacity(records.len());
    for signed_record in records {
        let call = client.settle(SettleRequest {
            signed_record: signed_record.clone(),
        });
        answers.push(match tokio::time::timeout(bound, call).await {
            Ok(Ok(response)) => Ok(response.into_inner().signed_receipt),
            Ok(Err(status)) => Err(failed(status)),
            Err(_) => Err(failed(tonic::Status::deadline_exceeded(
                "no answer in time",
            ))),
        });
    }
    answers
}
