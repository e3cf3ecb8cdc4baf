//! Reading two nodes' books from outside, as an auditor with their public keys would, and
//! checking that they tell the same story: every claim of the redeemer's provider decided by
//! the issuer exactly once, every receipt genuine and recorded identically on both sides, both
//! ledgers' hash chains intact up to their signed heads, the issuer's liabilities equal to the
//! redeemer's receivables claim by claim and voucher by voucher ([`check_pair`]), and the
//! signed period statements the nodes exchange for clearing saying the same
//! ([`check_statements`]).
//!
//! Inconsistencies that are counts (a claim the issuer never decided, a decision recorded
//! twice) are returned, so that tests can print them; anything else that does not check out
//! (a bad signature, a broken chain, a receipt that differs between the two sides) is an error.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, anyhow, bail, ensure};
use ed25519_dalek::VerifyingKey;
use prost::Message;
use schein_node::client::IdentityFile;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::federation_client::FederationClient;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    ClaimAmount, ClaimRecord, ClaimState, ClaimStatusRequest, LedgerEntry, LedgerEvent,
    LedgerRequest, ListClaimsRequest, Outcome, PeriodStatement, Receipt, RejectReason,
    ShowVoucherRequest, SigningKey, StatementRequest, ledger_event,
};
use tonic::transport::Channel;

use crate::process::NodeProcess;

/// A node's whole ledger, checked: entries from 1 chained to the head the node signed.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub node: String,
    pub entries: Vec<LedgerEntry>,
    /// The node's public signing keys, as it publishes them with its ledger.
    pub keys: Vec<SigningKey>,
}

impl Ledger {
    /// Fetches the ledger of `office`'s node page by page and checks chain and head.
    pub async fn fetch(office: &IdentityFile) -> anyhow::Result<Self> {
        let mut client = OfficeClient::new(office.connect(None).await?);
        let mut entries = Vec::new();
        // Page until an empty page: its head was signed after every entry fetched.
        let (head, keys) = loop {
            let page = client
                .ledger(LedgerRequest {
                    from_seq: entries.len() as u64 + 1,
                    limit: 1000,
                })
                .await?
                .into_inner();
            if page.entries.is_empty() {
                break (page.signed_head, page.signing_keys);
            }
            entries.extend(page.entries);
        };
        let checked = schein_proto::ledger::verify_chain(&entries, &head, &keys)
            .with_context(|| format!("the ledger of {} does not check out", office.node))?;
        ensure!(
            checked.head.node == office.node,
            "the head of {}'s ledger names {}",
            office.node,
            checked.head.node
        );
        Ok(Self {
            node: office.node.clone(),
            entries,
            keys,
        })
    }

    /// The events of the ledger, decoded.
    pub fn events(&self) -> anyhow::Result<Vec<ledger_event::Event>> {
        self.entries
            .iter()
            .map(|entry| {
                LedgerEvent::decode(entry.event.as_slice())?
                    .event
                    .ok_or_else(|| anyhow!("entry {} of {} is empty", entry.seq, self.node))
            })
            .collect()
    }

    /// Opens a document of `kind` signed by this ledger's node.
    pub fn open<M: Message + Default>(&self, kind: Kind, bytes: &[u8]) -> anyhow::Result<M> {
        open_with(&self.keys, kind, bytes)
    }
}

/// Opens `bytes` as a document of `kind` signed with one of `keys`, strictly.
pub fn open_with<M: Message + Default>(
    keys: &[SigningKey],
    kind: Kind,
    bytes: &[u8],
) -> anyhow::Result<M> {
    // Only to find the key id; nothing read here is trusted before the signature checks.
    let key_id = match kind {
        Kind::Receipt => signed::peek::<Receipt>(bytes)?.key_id,
        Kind::Statement => signed::peek::<PeriodStatement>(bytes)?.key_id,
        other => bail!("cannot open a {other:?} here"),
    };
    let key = keys
        .iter()
        .find(|k| k.key_id == key_id)
        .ok_or_else(|| anyhow!("signed with unknown key {key_id}"))?;
    let key = VerifyingKey::from_bytes(
        key.public_key
            .as_slice()
            .try_into()
            .context("a public key has 32 bytes")?,
    )?;
    Ok(signed::open(kind, bytes, &key)?)
}

/// Every claim of `provider` at its node, page by page.
pub async fn list_claims(provider: &IdentityFile) -> anyhow::Result<Vec<ClaimRecord>> {
    let mut client = ProviderClient::new(provider.connect(None).await?);
    let mut claims = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_claims(ListClaimsRequest {
                pending_only: false,
                limit: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        claims.extend(page.claims);
        if page.next_page_token.is_empty() {
            return Ok(claims);
        }
        page_token = page.next_page_token;
    }
}

/// What the check of one issuer–redeemer pair found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairBooks {
    /// Claims settled (accepted by the issuer) and rejected with a reason.
    pub settled: usize,
    pub rejected: usize,
    /// Claims the redeemer's provider had acknowledged but the issuer never decided.
    pub lost: usize,
    /// Decisions recorded more than once, on either side, or at the issuer for no claim.
    pub doubled: usize,
    /// Vouchers whose issuer-side sum was compared with the redeemer's.
    pub vouchers: usize,
    pub settled_cents: i64,
    /// Rejections by reason.
    pub reasons: BTreeMap<String, usize>,
    /// The settled claims as the issuer owes them (settlement id, amount), sorted.
    pub liabilities: Vec<ClaimAmount>,
    /// The years of the claims' service months.
    pub years: BTreeSet<i32>,
}

/// Clearing: the issuer's signed statements of liabilities to the redeemer equal the
/// redeemer's signed statements of receivables from the issuer, and both equal the settled
/// claims `books` found.
pub async fn check_statements(
    issuer: &NodeProcess,
    redeemer: &NodeProcess,
    books: &PairBooks,
) -> anyhow::Result<()> {
    let issuer_ledger = Ledger::fetch(&issuer.office()?).await?;
    let redeemer_ledger = Ledger::fetch(&redeemer.office()?).await?;
    let mut stated_liabilities = Vec::new();
    let mut stated_receivables = Vec::new();
    for year in &books.years {
        let period = year.to_string();
        let of_issuer = statement(issuer, redeemer, &issuer_ledger, &period).await?;
        let of_redeemer = statement(redeemer, issuer, &redeemer_ledger, &period).await?;
        stated_liabilities.extend(of_issuer.liabilities);
        stated_receivables.extend(of_redeemer.receivables);
    }
    stated_liabilities.sort_by(|a, b| a.claim_id.cmp(&b.claim_id));
    stated_receivables.sort_by(|a, b| a.claim_id.cmp(&b.claim_id));
    ensure!(
        stated_liabilities == stated_receivables,
        "{}'s liabilities to {} differ from {}'s receivables",
        issuer.id,
        redeemer.id,
        redeemer.id
    );
    ensure!(
        stated_liabilities == books.liabilities,
        "the statements differ from the settled claims"
    );
    Ok(())
}

/// Checks the books of `issuer` against those of `redeemer` for the claims `claim_ids` of
/// `provider` (a provider of the redeemer). Every one of them must be final (settled or
/// rejected); call it once the outbox is empty.
pub async fn check_pair(
    issuer: &NodeProcess,
    redeemer: &NodeProcess,
    provider: &IdentityFile,
    claim_ids: &[String],
) -> anyhow::Result<PairBooks> {
    let issuer_ledger = Ledger::fetch(&issuer.office()?).await?;
    let redeemer_ledger = Ledger::fetch(&redeemer.office()?).await?;
    let mut books = PairBooks::default();

    // The issuer's decisions on this redeemer's records, and what the redeemer recorded.
    let mut decided: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for event in issuer_ledger.events()? {
        if let ledger_event::Event::Receipt(bytes) = event {
            let receipt: Receipt = issuer_ledger.open(Kind::Receipt, &bytes)?;
            if receipt.redeemer == redeemer.id {
                decided.entry(receipt.claim_id).or_default().push(bytes);
            }
        }
    }
    let mut received: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for event in redeemer_ledger.events()? {
        if let ledger_event::Event::ReceivedReceipt(bytes) = event {
            // A receipt the redeemer keeps is signed by the issuer.
            let receipt: Receipt = issuer_ledger.open(Kind::Receipt, &bytes)?;
            if receipt.issuer == issuer.id {
                received.entry(receipt.claim_id).or_default().push(bytes);
            }
        }
    }

    // Nothing missing, nothing extra at the redeemer.
    let listed = list_claims(provider).await?;
    let listed_ids: Vec<&str> = listed
        .iter()
        .filter(|c| c.issuer == issuer.id)
        .map(|c| c.claim_id.as_str())
        .collect();
    let wanted: BTreeSet<&str> = claim_ids.iter().map(String::as_str).collect();
    ensure!(
        listed_ids.len() == wanted.len() && listed_ids.iter().all(|id| wanted.contains(id)),
        "{} lists {} claims on {}'s vouchers; {} were acknowledged",
        redeemer.id,
        listed_ids.len(),
        issuer.id,
        wanted.len()
    );

    let mut client = ProviderClient::new(provider.connect(None).await?);
    let mut settlement_ids = BTreeSet::new();
    // Per voucher (short code): what the redeemer was paid, and what the issuer's ledger says.
    let mut redeemer_per_voucher: BTreeMap<String, i64> = BTreeMap::new();
    let mut issuer_per_voucher: BTreeMap<String, i64> = BTreeMap::new();
    let mut liabilities = Vec::new();
    let mut years = BTreeSet::new();
    for claim_id in claim_ids {
        let claim = status(&mut client, claim_id).await?;
        let state = claim.state();
        ensure!(
            matches!(state, ClaimState::Settled | ClaimState::Rejected),
            "claim {claim_id} is {state:?}, not final: {}",
            claim.message
        );
        let receipt: Receipt = issuer_ledger
            .open(Kind::Receipt, &claim.receipt)
            .with_context(|| format!("the receipt of claim {claim_id}"))?;
        let accepted = receipt.outcome == Outcome::Accepted as i32;
        ensure!(
            accepted == (state == ClaimState::Settled)
                && receipt.issuer == issuer.id
                && receipt.redeemer == redeemer.id
                && receipt.amount_cents == claim.amount_cents
                && receipt.ledger_seq == claim.issuer_ledger_seq,
            "the receipt of claim {claim_id} does not fit the claim: {receipt:?} / {claim:?}"
        );
        ensure!(
            settlement_ids.insert(receipt.claim_id.clone()),
            "two claims share settlement id {}",
            receipt.claim_id
        );
        years.insert(receipt.service_month / 100);
        let mut claim_lost = false;
        for (side, records) in [("issuer", &decided), ("redeemer", &received)] {
            match records.get(&receipt.claim_id).map(Vec::as_slice) {
                None | Some([]) => {
                    eprintln!("claim {claim_id}: no decision in the {side}'s ledger");
                    claim_lost = true;
                }
                Some([one]) => ensure!(
                    one == &claim.receipt,
                    "claim {claim_id}: the {side}'s ledger holds another receipt than the claim"
                ),
                Some(many) => {
                    eprintln!(
                        "claim {claim_id}: {} decisions in the {side}'s ledger",
                        many.len()
                    );
                    books.doubled += many.len() - 1;
                }
            }
        }
        books.lost += usize::from(claim_lost);
        if accepted {
            books.settled += 1;
            books.settled_cents += claim.amount_cents;
            *redeemer_per_voucher
                .entry(claim.voucher_short_code.clone())
                .or_default() += claim.amount_cents;
            liabilities.push(ClaimAmount {
                claim_id: receipt.claim_id.clone(),
                amount_cents: receipt.amount_cents,
            });
        } else {
            let reason = RejectReason::try_from(receipt.reason).unwrap_or_default();
            ensure!(
                reason != RejectReason::Unspecified && !claim.message.is_empty(),
                "claim {claim_id} was rejected without a reason"
            );
            books.rejected += 1;
            *books
                .reasons
                .entry(reason.as_str_name().to_owned())
                .or_default() += 1;
        }
        // What the issuer's ledger says was paid on the voucher, decision by decision.
        if let Some(bytes) = decided.get(&receipt.claim_id) {
            for bytes in bytes {
                let decision: Receipt = issuer_ledger.open(Kind::Receipt, bytes)?;
                if decision.outcome == Outcome::Accepted as i32 {
                    *issuer_per_voucher
                        .entry(claim.voucher_short_code.clone())
                        .or_default() += decision.amount_cents;
                }
            }
        }
    }
    // Decisions at the issuer for records no acknowledged claim made: money owed for nothing.
    for (id, records) in &decided {
        if !settlement_ids.contains(id) {
            eprintln!("settlement {id}: decided by the issuer, but no claim has it");
            books.doubled += records.len();
        }
    }
    for (id, records) in &received {
        if !settlement_ids.contains(id) {
            eprintln!("settlement {id}: recorded by the redeemer, but no claim has it");
            books.doubled += records.len();
        }
    }

    // Voucher by voucher: the issuer's own account equals what the redeemer was paid.
    let mut office = OfficeClient::new(issuer.office()?.connect(None).await?);
    for (code, &paid) in &redeemer_per_voucher {
        let shown = office
            .show_voucher(ShowVoucherRequest { code: code.clone() })
            .await?
            .into_inner();
        let issuer_sum = shown.claimed_cents + shown.medication_cents;
        if issuer_sum != paid || issuer_per_voucher.get(code) != Some(&paid) {
            eprintln!(
                "voucher {code}: {} paid {paid}, {} counts {issuer_sum}, its ledger {:?}",
                redeemer.id,
                issuer.id,
                issuer_per_voucher.get(code)
            );
            books.doubled += 1;
        }
        books.vouchers += 1;
    }

    liabilities.sort_by(|a, b| a.claim_id.cmp(&b.claim_id));
    books.liabilities = liabilities;
    books.years = years;
    Ok(books)
}

async fn status(
    client: &mut ProviderClient<Channel>,
    claim_id: &str,
) -> anyhow::Result<ClaimRecord> {
    Ok(client
        .claim_status(ClaimStatusRequest {
            claim_id: claim_id.to_owned(),
        })
        .await?
        .into_inner())
}

/// `of`'s signed statement of `period` about `about`, asked with `about`'s node certificate.
async fn statement(
    of: &NodeProcess,
    about: &NodeProcess,
    of_ledger: &Ledger,
    period: &str,
) -> anyhow::Result<PeriodStatement> {
    let identity = about.node_identity_at(of)?;
    let bytes = FederationClient::new(identity.connect(None).await?)
        .statement(StatementRequest {
            period: period.to_owned(),
            // Every claim in one statement: as a node of wire version 1 asks.
            ..Default::default()
        })
        .await?
        .into_inner()
        .signed_statement;
    let statement: PeriodStatement = of_ledger
        .open(Kind::Statement, &bytes)
        .with_context(|| format!("{}'s statement of {period} ({} bytes)", of.id, bytes.len()))?;
    ensure!(
        statement.node == of.id && statement.peer == about.id && statement.period == period,
        "a statement about something else: {statement:?}"
    );
    Ok(statement)
}
