//! `schein claim …` (providers bill treatments; offices decide on held claims) and
//! `schein ledger verify`.

use anyhow::{Context, anyhow};
use clap::{Subcommand, ValueEnum};
use schein_proto::Day;
use schein_proto::money::Cents;
use schein_proto::v1::{
    Category, ClaimItem, ClaimRecord, ClaimState, ClaimStatusRequest, DecideHeldClaimRequest,
    LedgerRequest, ListClaimsRequest, PeerLedgerRequest, ProviderKind, SubmitClaimRequest,
};

use crate::Outcome;
use crate::client::{Client, read_code};
use crate::output::Output;

#[derive(Subcommand, Debug)]
pub(crate) enum ClaimCommand {
    /// Bill a treatment on a voucher (provider). Settled with the issuing city at once, or as
    /// soon as it can be reached. Exit code: 0 settled, 5 rejected, 6 pending, 7 held.
    Submit {
        /// The voucher's full code or short code (`-` reads it from standard input).
        #[arg(long)]
        voucher: String,
        /// Day of the service, YYYY-MM-DD (default: today).
        #[arg(long, value_parser = parse_day)]
        date: Option<Day>,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// A bill line: FEE-CODE:COUNT:EUROS, where EUROS is the amount of the whole line (COUNT
        /// times the unit price), e.g. GOAE-1:2:9.32 for two consultations at EUR 4.66. Repeat
        /// for more lines. `schein-node fees` shows the most the issuer pays per unit.
        #[arg(long = "item", value_parser = parse_item, required = true)]
        items: Vec<ClaimItem>,
        #[arg(long, value_enum, default_value = "treatment")]
        category: CategoryArg,
        /// Your id for this claim; sending the same claim again with the same id is safe.
        /// Default: a new random id, printed.
        #[arg(long)]
        id: Option<String>,
    },
    /// Show one of your claims (provider). Exit code as for submit.
    Status { id: String },
    /// List your claims, newest first (provider).
    List {
        /// Only claims still waiting for the issuer's receipt.
        #[arg(long)]
        pending: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Claims held as possible duplicates (office).
    Held,
    /// Claims whose settlement record the issuing office refused for good: not sent again, each
    /// with the reason (office).
    Undeliverable,
    /// Release a held claim for settlement: it is not a duplicate (office). Exit code as for
    /// submit: 0 settled, 5 rejected by the issuer, 6 pending.
    Release { provider: String, id: String },
    /// Reject a held claim as a duplicate (office). Exit code 0 once it is rejected.
    Reject { provider: String, id: String },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum KindArg {
    Practice,
    Dentist,
    Hospital,
    Pharmacy,
    Interpreter,
}

impl From<KindArg> for ProviderKind {
    fn from(arg: KindArg) -> Self {
        match arg {
            KindArg::Practice => ProviderKind::Practice,
            KindArg::Dentist => ProviderKind::Dentist,
            KindArg::Hospital => ProviderKind::Hospital,
            KindArg::Pharmacy => ProviderKind::Pharmacy,
            KindArg::Interpreter => ProviderKind::Interpreter,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum CategoryArg {
    Treatment,
    Medication,
}

impl From<CategoryArg> for Category {
    fn from(arg: CategoryArg) -> Self {
        match arg {
            CategoryArg::Treatment => Category::Treatment,
            CategoryArg::Medication => Category::Medication,
        }
    }
}

fn parse_day(text: &str) -> Result<Day, String> {
    Day::parse(text).map_err(|e| e.to_string())
}

fn parse_item(text: &str) -> Result<ClaimItem, String> {
    let usage = || format!("'{text}' is not FEE-CODE:COUNT:EUROS (e.g. GOAE-1:1:4.66)");
    let mut parts = text.rsplitn(3, ':');
    let (Some(euros), Some(count), Some(code)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(usage());
    };
    let count: u32 = count.trim().parse().map_err(|_| usage())?;
    let amount = Cents::parse_euros(euros).map_err(|e| e.to_string())?;
    if code.trim().is_empty() {
        return Err(usage());
    }
    Ok(ClaimItem {
        fee_code: code.trim().to_owned(),
        count,
        amount_cents: amount.0,
    })
}

/// A fresh claim id: 16 random hex digits.
fn new_claim_id() -> String {
    let bytes: [u8; 8] = rand_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rand_bytes() -> [u8; 8] {
    // A serial is 10 random bytes from the OS; eight of them make a claim id.
    let serial = schein_proto::Serial::random();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&serial.as_bytes()[..8]);
    bytes
}

pub(crate) async fn submit(
    client: &Client,
    request: SubmitClaimRequest,
) -> anyhow::Result<ClaimRecord> {
    Ok(client
        .provider()
        .submit_claim(request)
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner())
}

pub(crate) async fn execute(
    client: &Client,
    command: ClaimCommand,
    out: &Output,
) -> anyhow::Result<Outcome> {
    match command {
        ClaimCommand::Submit {
            voucher,
            date,
            kind,
            items,
            category,
            id,
        } => {
            let claim_id = id.unwrap_or_else(new_claim_id);
            let request = SubmitClaimRequest {
                claim_id,
                code: read_code(&voucher)?,
                // The provider's today; the node refuses a day that lies in its future.
                service_date: Some(date.unwrap_or_else(Day::today).into()),
                provider_kind: ProviderKind::from(kind) as i32,
                items,
                category: Category::from(category) as i32,
            };
            let record = submit(client, request).await?;
            out.claim(&record);
            outcome_of(&record)
        }
        ClaimCommand::Status { id } => {
            let record = client
                .provider()
                .claim_status(ClaimStatusRequest { claim_id: id })
                .await
                .map_err(|s| client.explain(&s))?
                .into_inner();
            out.claim(&record);
            outcome_of(&record)
        }
        ClaimCommand::List { pending, limit } => {
            let response = client
                .provider()
                .list_claims(ListClaimsRequest {
                    pending_only: pending,
                    limit,
                    ..Default::default()
                })
                .await
                .map_err(|s| client.explain(&s))?
                .into_inner();
            out.claims(&response.claims);
            Ok(Outcome::Done)
        }
        ClaimCommand::Held => {
            let response = client
                .office()
                .list_held_claims(ListClaimsRequest::default())
                .await
                .map_err(|s| client.explain(&s))?
                .into_inner();
            out.claims(&response.claims);
            Ok(Outcome::Done)
        }
        ClaimCommand::Undeliverable => {
            let mut claims = Vec::new();
            let mut page_token = String::new();
            loop {
                let response = client
                    .office()
                    .list_held_claims(ListClaimsRequest {
                        undeliverable_only: true,
                        limit: 1000,
                        page_token,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| client.explain(&s))?
                    .into_inner();
                claims.extend(response.claims);
                if response.next_page_token.is_empty() {
                    break;
                }
                page_token = response.next_page_token;
            }
            out.claims(&claims);
            Ok(Outcome::Done)
        }
        ClaimCommand::Release { provider, id } => decide(client, provider, id, true, out).await,
        ClaimCommand::Reject { provider, id } => decide(client, provider, id, false, out).await,
    }
}

async fn decide(
    client: &Client,
    provider: String,
    claim_id: String,
    release: bool,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let record = client
        .office()
        .decide_held_claim(DecideHeldClaimRequest {
            provider,
            claim_id,
            release,
        })
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner();
    out.claim(&record);
    // Rejecting a duplicate succeeds when the claim ends rejected; a released claim answers
    // like a submitted one (settled, or pending while its issuer is down).
    if !release && record.state() == ClaimState::Rejected {
        return Ok(Outcome::Done);
    }
    outcome_of(&record)
}

/// The exit of a command that answers with one claim: by the claim's state.
pub(crate) fn outcome_of(record: &ClaimRecord) -> anyhow::Result<Outcome> {
    match record.state() {
        ClaimState::Settled => Ok(Outcome::Done),
        // Refused by the issuer as a record: not paid either.
        ClaimState::Rejected | ClaimState::Undeliverable => Ok(Outcome::ClaimRejected),
        ClaimState::Pending => Ok(Outcome::ClaimPending),
        ClaimState::Held => Ok(Outcome::ClaimHeld),
        ClaimState::Unspecified => Err(anyhow!(
            "the node answered with a claim state this version of schein does not know"
        )),
    }
}

/// Fetches the node's whole ledger and checks the chain and the signed head.
pub(crate) async fn verify_ledger(client: &Client, out: &Output) -> anyhow::Result<Outcome> {
    let mut entries = Vec::new();
    // Page until an empty page: its head was signed after every entry fetched.
    let (head, keys) = loop {
        let page = client
            .office()
            .ledger(LedgerRequest {
                from_seq: entries.len() as u64 + 1,
                limit: 1000,
            })
            .await
            .map_err(|s| client.explain(&s))?
            .into_inner();
        if page.entries.is_empty() {
            break (page.signed_head, page.signing_keys);
        }
        entries.extend(page.entries);
    };
    let checked =
        schein_proto::ledger::verify_chain(&entries, &head, &keys).with_context(|| {
            format!(
                "the ledger of node {} does NOT check out",
                client.identity.node
            )
        })?;
    out.ledger(&client.identity.node, &checked);
    if checked.head.node != client.identity.node {
        return Err(anyhow!(
            "the head was signed for node '{}'",
            checked.head.node
        ));
    }
    Ok(Outcome::Done)
}

/// Has the node check a peer's whole ledger against the head it witnessed and the receipts the
/// peer gave it.
pub(crate) async fn verify_peer_ledger(
    client: &Client,
    peer: &str,
    out: &Output,
) -> anyhow::Result<Outcome> {
    let check = client
        .office()
        .peer_ledger(PeerLedgerRequest {
            node: peer.to_owned(),
        })
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner();
    out.peer_ledger(&client.identity.node, &check);
    Ok(if check.findings.is_empty() {
        Outcome::Done
    } else {
        Outcome::LedgerContradicted
    })
}
