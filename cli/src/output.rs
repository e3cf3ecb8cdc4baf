//! Printing results: sentences and aligned fields for people, JSON for scripts. Nothing printed
//! here says anything about a person; vouchers carry no such data.
//!
//! Everything `schein` prints for its caller goes to standard output through [`emit`] (or the
//! [`outln!`] macro), never `println!`: a reader that went away (`schein voucher list | head
//! -1`) ends the output quietly instead of panicking, and the command still exits with its own
//! code, which after `voucher issue` must say that the voucher was issued. Any other write
//! error is kept and reported by [`finish`].

use std::fmt;
use std::io::{self, Write as _};
use std::sync::{Mutex, PoisonError};

use schein_proto::Day;
use schein_proto::money::Cents;
use schein_proto::v1::{
    ClaimRecord, ClaimState, InvalidReason, ListVouchersResponse, RejectReason, RevocationReason,
    Scope, Verdict, Verification, VoucherFacts, VoucherRecord, VoucherState,
};
use serde_json::{Value, json};

use crate::client::Client;

/// What became of standard output.
#[derive(Debug)]
enum Sink {
    Open,
    /// The reader closed the pipe: nobody reads any more, so nothing more is written.
    Closed,
    /// Writing failed otherwise (disk full, device error): the first error, for [`finish`].
    Failed(io::Error),
}

static STDOUT: Mutex<Sink> = Mutex::new(Sink::Open);

/// Writes `args` to standard output, unless it was closed or failed before.
pub(crate) fn emit(args: fmt::Arguments<'_>) {
    let mut sink = STDOUT.lock().unwrap_or_else(PoisonError::into_inner);
    if !matches!(*sink, Sink::Open) {
        return;
    }
    if let Err(error) = io::stdout().lock().write_fmt(args) {
        *sink = sink_after(error);
    }
}

fn sink_after(error: io::Error) -> Sink {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Sink::Closed
    } else {
        Sink::Failed(error)
    }
}

/// Prints a line through [`emit`], like `println!`.
macro_rules! outln {
    () => {
        $crate::output::emit(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Flushes standard output at the end of a command. `Ok` also when the reader closed the pipe
/// (a quiet end); the error if anything could not be written otherwise.
pub(crate) fn finish() -> io::Result<()> {
    let mut sink = STDOUT.lock().unwrap_or_else(PoisonError::into_inner);
    if matches!(*sink, Sink::Open)
        && let Err(error) = io::stdout().lock().flush()
    {
        *sink = sink_after(error);
    }
    match std::mem::replace(&mut *sink, Sink::Closed) {
        Sink::Open | Sink::Closed => Ok(()),
        Sink::Failed(error) => Err(error),
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub(crate) json: bool,
}

fn day(day: Option<schein_proto::v1::Day>) -> String {
    day.map(|d| Day::from(d).to_string()).unwrap_or_default()
}

fn scopes(scope: &[i32]) -> Vec<String> {
    scope
        .iter()
        .filter_map(|&s| Scope::try_from(s).ok())
        .map(|s| scope_name(s).to_owned())
        .collect()
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Unspecified | Scope::Ambulatory => "ambulatory",
        Scope::Medication => "medication",
        Scope::PregnancyCare => "pregnancy-care",
        Scope::SpecialistReferral => "specialist-referral",
        Scope::Dental => "dental",
    }
}

fn state_name(state: VoucherState) -> &'static str {
    match state {
        VoucherState::Unspecified => "unknown",
        VoucherState::Active => "active",
        VoucherState::Revoked => "revoked",
        VoucherState::Expired => "expired",
        VoucherState::NotYetValid => "not yet valid",
    }
}

fn reason_name(reason: RevocationReason) -> &'static str {
    match reason {
        RevocationReason::Unspecified => "",
        RevocationReason::Lost => "lost",
        RevocationReason::Stolen => "stolen",
        RevocationReason::IssuedInError => "issued in error",
        RevocationReason::Replaced => "replaced",
    }
}

fn cents(value: Option<i64>) -> String {
    value
        .map(|c| Cents(c).to_string())
        .unwrap_or_else(|| "none".into())
}

/// `Some(provider)` if only that provider may claim; JSON and text agree on when.
fn bound(provider: &str) -> Option<&str> {
    Some(provider.trim()).filter(|p| !p.is_empty())
}

/// What kind of voucher, in words: "emergency voucher, bound to leipzig/klinikum-sued".
fn kind_words(emergency: bool, bound_provider: &str) -> Option<String> {
    match (emergency, bound(bound_provider)) {
        (true, Some(provider)) => Some(format!("emergency voucher, bound to {provider}")),
        (true, None) => Some("emergency voucher".to_owned()),
        (false, Some(provider)) => Some(format!("bound to {provider}")),
        (false, None) => None,
    }
}

fn record_json(record: &VoucherRecord) -> Value {
    json!({
        "short_code": record.short_code,
        "full_code": record.full_code,
        "issuer": record.issuer,
        "state": state_name(record.state()),
        "emergency": record.emergency,
        "bound_provider": bound(&record.bound_provider),
        "valid_from": day(record.valid_from),
        "valid_until": day(record.valid_until),
        "scope": scopes(&record.scope),
        "cap_cents": record.cap_cents,
        "claimed_cents": record.claimed_cents,
        "issued_on": day(record.issued_on),
        "revoked_on": record.revoked_on.map(|d| day(Some(d))),
        "revocation_reason": reason_name(record.revocation_reason()),
    })
}

fn facts_json(facts: &VoucherFacts) -> Value {
    json!({
        "issuer": facts.issuer,
        "issuer_name": facts.issuer_name,
        "short_code": facts.short_code,
        "emergency": facts.emergency,
        "bound_provider": bound(&facts.bound_provider),
        "valid_from": day(facts.valid_from),
        "valid_until": day(facts.valid_until),
        "scope": scopes(&facts.scope),
        "cap_cents": facts.cap_cents,
        "remaining_cap_cents": facts.remaining_cap_cents,
        "remaining_medication_cents": facts.remaining_medication_cents,
    })
}

fn verification_json(verification: &Verification) -> Value {
    json!({
        "verdict": verdict_name(verification.verdict()),
        "reason": reason_code(verification.reason()),
        "message": verification.message,
        "voucher": verification.voucher.as_ref().map(facts_json),
    })
}

/// A voucher as its office sees it, in text; `verb` ("issued", "revoked") heads it if given.
struct RecordText<'a> {
    verb: &'a str,
    record: &'a VoucherRecord,
    qr: Option<&'a std::path::Path>,
}

impl fmt::Display for RecordText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = self.record;
        if !self.verb.is_empty() {
            let kind = if record.emergency {
                "Emergency voucher"
            } else {
                "Voucher"
            };
            writeln!(f, "{kind} {}.", self.verb)?;
        }
        writeln!(f, "  short code   {}", record.short_code)?;
        if let Some(kind) = kind_words(record.emergency, &record.bound_provider) {
            writeln!(
                f,
                "  kind         {kind}: only that provider may claim on it"
            )?;
        }
        writeln!(f, "  state        {}", state_name(record.state()))?;
        write_terms(
            f,
            record.valid_from,
            record.valid_until,
            &record.scope,
            record.cap_cents,
        )?;
        writeln!(f, "  claimed      {}", Cents(record.claimed_cents))?;
        writeln!(f, "  issued on    {}", day(record.issued_on))?;
        if let Some(on) = record.revoked_on {
            writeln!(
                f,
                "  revoked      {} ({})",
                day(Some(on)),
                reason_name(record.revocation_reason())
            )?;
        }
        if let Some(path) = self.qr {
            writeln!(f, "  QR code      {}", path.display())?;
        }
        writeln!(f, "  full code    {}", record.full_code)
    }
}

/// One line per voucher, for `voucher list`.
struct ListText<'a>(&'a ListVouchersResponse);

impl fmt::Display for ListText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let response = self.0;
        if response.vouchers.is_empty() {
            writeln!(f, "No vouchers.")?;
        }
        for record in &response.vouchers {
            write!(
                f,
                "{:<28} {:<14} {} to {}  cap {:<12} claimed {}",
                record.short_code,
                state_name(record.state()),
                day(record.valid_from),
                day(record.valid_until),
                cents(record.cap_cents),
                Cents(record.claimed_cents)
            )?;
            match kind_words(record.emergency, &record.bound_provider) {
                Some(kind) => writeln!(f, "  {kind}")?,
                None => writeln!(f)?,
            }
        }
        if !response.next_page_token.is_empty() {
            writeln!(f, "more: --page-token {}", response.next_page_token)?;
        }
        Ok(())
    }
}

/// A verification in text: the verdict and the provider's sentence first, the facts indented.
struct VerificationText<'a>(&'a Verification);

impl fmt::Display for VerificationText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verification = self.0;
        let facts = verification.voucher.as_ref();
        let head = match verification.verdict() {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::StatusUnknown => "NOT CONFIRMED",
            Verdict::IssuerUnreachable => "CANNOT CHECK NOW",
            Verdict::Unspecified => "UNKNOWN ANSWER",
        };
        writeln!(f, "{head}: {}", verification.message)?;
        let bound_provider = facts.and_then(|f| bound(&f.bound_provider));
        if verification.reason() == InvalidReason::BoundElsewhere {
            match bound_provider {
                Some(provider) => writeln!(
                    f,
                    "  NOT FOR YOU  this emergency voucher is bound to {provider}; only that provider may treat and bill on it"
                )?,
                None => writeln!(
                    f,
                    "  NOT FOR YOU  this emergency voucher is bound to another provider; only that provider may treat and bill on it"
                )?,
            }
        }
        let Some(facts) = facts else { return Ok(()) };
        writeln!(f, "  issuer       {} ({})", facts.issuer_name, facts.issuer)?;
        if !facts.short_code.is_empty() {
            writeln!(f, "  short code   {}", facts.short_code)?;
        }
        if let Some(kind) = kind_words(facts.emergency, &facts.bound_provider) {
            writeln!(f, "  kind         {kind}")?;
        }
        write_terms(
            f,
            facts.valid_from,
            facts.valid_until,
            &facts.scope,
            facts.cap_cents,
        )?;
        if facts.remaining_cap_cents.is_some() {
            writeln!(f, "  left         {}", cents(facts.remaining_cap_cents))?;
        }
        if facts.remaining_medication_cents.is_some() {
            writeln!(
                f,
                "  medication   {} left (outside the cap)",
                cents(facts.remaining_medication_cents)
            )?;
        }
        Ok(())
    }
}

impl Output {
    pub(crate) fn voucher_record(
        &self,
        verb: &str,
        record: &VoucherRecord,
        qr: Option<&std::path::Path>,
    ) {
        if self.json {
            let mut value = record_json(record);
            if let Some(path) = qr {
                value["qr_file"] = json!(path.display().to_string());
            }
            outln!("{value}");
        } else {
            emit(format_args!("{}", RecordText { verb, record, qr }));
        }
    }

    pub(crate) fn voucher_list(&self, response: &ListVouchersResponse) {
        if self.json {
            let vouchers: Vec<Value> = response.vouchers.iter().map(record_json).collect();
            outln!(
                "{}",
                json!({"vouchers": vouchers, "next_page_token": response.next_page_token})
            );
        } else {
            emit(format_args!("{}", ListText(response)));
        }
    }

    pub(crate) fn verification(&self, verification: &Verification) {
        if self.json {
            outln!("{}", verification_json(verification));
        } else {
            emit(format_args!("{}", VerificationText(verification)));
        }
    }

    pub(crate) fn status(&self, client: &Client) {
        let id = &client.identity;
        if self.json {
            outln!(
                "{}",
                json!({"node": id.node, "endpoint": client.endpoint, "role": id.role.as_str(), "name": id.name, "serving": true})
            );
        } else {
            outln!(
                "Node {} ({}) at {} is serving and accepts you as {} '{}'.",
                id.node_name,
                id.node,
                client.endpoint,
                id.role,
                id.name
            );
        }
    }
}

/// The terms of a voucher, as the office and the provider both see them.
fn write_terms(
    f: &mut fmt::Formatter<'_>,
    from: Option<schein_proto::v1::Day>,
    until: Option<schein_proto::v1::Day>,
    scope: &[i32],
    cap_cents: Option<i64>,
) -> fmt::Result {
    writeln!(f, "  valid        {} to {}", day(from), day(until))?;
    writeln!(f, "  covers       {}", scopes(scope).join(", "))?;
    writeln!(f, "  cap          {}", cents(cap_cents))
}

fn claim_state_name(state: ClaimState) -> &'static str {
    match state {
        ClaimState::Unspecified => "unknown",
        ClaimState::Pending => "pending",
        ClaimState::Settled => "settled",
        ClaimState::Rejected => "rejected",
        ClaimState::Held => "held",
        ClaimState::Undeliverable => "undeliverable",
    }
}

pub(crate) fn reject_reason_code(reason: RejectReason) -> Option<&'static str> {
    match reason {
        RejectReason::Unspecified => None,
        RejectReason::UnknownVoucher => Some("unknown_voucher"),
        RejectReason::Revoked => Some("revoked"),
        RejectReason::Expired => Some("expired"),
        RejectReason::DeadlinePassed => Some("deadline_passed"),
        RejectReason::OverCap => Some("over_cap"),
        RejectReason::Duplicate => Some("duplicate"),
        RejectReason::OutOfScope => Some("out_of_scope"),
        RejectReason::PeriodClosed => Some("period_closed"),
        RejectReason::OverMedicationCeiling => Some("over_medication_ceiling"),
        RejectReason::OverClaimCeiling => Some("over_claim_ceiling"),
        RejectReason::NotBoundProvider => Some("not_bound_provider"),
    }
}

fn claim_json(claim: &ClaimRecord) -> Value {
    json!({
        "claim_id": claim.claim_id,
        "state": claim_state_name(claim.state()),
        "reason": reject_reason_code(claim.reason()),
        "message": claim.message,
        "voucher": claim.voucher_short_code,
        "issuer": claim.issuer,
        "service_date": day(claim.service_date),
        "amount_cents": claim.amount_cents,
        "remaining_cap_cents": claim.remaining_cap_cents,
        "issuer_ledger_seq": claim.issuer_ledger_seq,
        "items": claim.items.iter().map(|i| json!({"fee_code": i.fee_code, "count": i.count, "amount_cents": i.amount_cents})).collect::<Vec<_>>(),
        "provider": claim.provider,
    })
}

struct ClaimText<'a>(&'a ClaimRecord);

impl fmt::Display for ClaimText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let claim = self.0;
        writeln!(
            f,
            "Claim {}: {}. {}",
            claim.claim_id,
            claim_state_name(claim.state()),
            claim.message
        )?;
        writeln!(
            f,
            "  voucher      {} ({})",
            claim.voucher_short_code, claim.issuer
        )?;
        writeln!(f, "  service on   {}", day(claim.service_date))?;
        writeln!(f, "  amount       {}", Cents(claim.amount_cents))?;
        if claim.issuer_ledger_seq > 0 {
            writeln!(
                f,
                "  receipt      entry {} of the issuer's ledger",
                claim.issuer_ledger_seq
            )?;
        }
        Ok(())
    }
}

struct ClaimsText<'a>(&'a [ClaimRecord]);

impl fmt::Display for ClaimsText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            writeln!(f, "No claims.")?;
        }
        for claim in self.0 {
            writeln!(
                f,
                "{:<18} {:<9} {:<28} {}  {:>12}  {}",
                claim.claim_id,
                claim_state_name(claim.state()),
                claim.voucher_short_code,
                day(claim.service_date),
                Cents(claim.amount_cents).to_string(),
                claim.provider
            )?;
        }
        Ok(())
    }
}

impl Output {
    pub(crate) fn message(&self, message: &str) {
        if !self.json {
            outln!("{message}");
        }
    }

    pub(crate) fn claim(&self, claim: &ClaimRecord) {
        if self.json {
            outln!("{}", claim_json(claim));
        } else {
            emit(format_args!("{}", ClaimText(claim)));
        }
    }

    pub(crate) fn claims(&self, claims: &[ClaimRecord]) {
        if self.json {
            let claims: Vec<Value> = claims.iter().map(claim_json).collect();
            outln!("{}", json!({ "claims": claims }));
        } else {
            emit(format_args!("{}", ClaimsText(claims)));
        }
    }

    pub(crate) fn ledger(&self, node: &str, checked: &schein_proto::ledger::CheckedLedger) {
        let hash = data_encoding::HEXLOWER.encode(&checked.head.hash);
        if self.json {
            outln!(
                "{}",
                json!({"node": node, "entries": checked.entries, "head_hash": hash, "valid": true})
            );
        } else {
            outln!(
                "The ledger of node {node} checks out: {} entries, each chained to the one before; head {} signed by the node.",
                checked.entries,
                &hash[..16.min(hash.len())]
            );
        }
    }
    pub(crate) fn peer_ledger(&self, witness: &str, check: &schein_proto::v1::PeerLedgerCheck) {
        let evidence = data_encoding::BASE64.encode(&check.evidence_head);
        let witnessed_on = (check.witnessed_at > 0)
            .then(|| schein_proto::Day::of_unix_seconds(check.witnessed_at).to_string());
        if self.json {
            outln!(
                "{}",
                json!({
                    "node": check.node,
                    "witness": witness,
                    "entries": check.entries,
                    "witnessed_seq": check.witnessed_seq,
                    "witnessed_on": witnessed_on,
                    "receipts_checked": check.receipts_checked,
                    "consistent": check.findings.is_empty(),
                    "findings": check.findings,
                    "evidence_head": (!check.evidence_head.is_empty()).then_some(evidence),
                })
            );
            return;
        }
        let node = &check.node;
        if check.findings.is_empty() {
            outln!(
                "The ledger of node {node} checks out against what {witness} holds: {} entries, chained; the head {witness} witnessed ({}) is in it, and {} receipts {node} gave {witness} are unchanged.",
                check.entries,
                match &witnessed_on {
                    Some(day) => format!("entry {}, {day}", check.witnessed_seq),
                    None => "none before".into(),
                },
                check.receipts_checked,
            );
            return;
        }
        outln!(
            "The ledger of node {node} does NOT match what {witness} holds: {node} changed its past."
        );
        for finding in &check.findings {
            outln!("  - {finding}");
        }
        if !check.evidence_head.is_empty() {
            outln!(
                "Proof: the head {node} signed earlier (base64, verifies with {node}'s signing key):\n  {evidence}"
            );
        }
    }
}

pub(crate) fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Unspecified => "unspecified",
        Verdict::Valid => "valid",
        Verdict::Invalid => "invalid",
        Verdict::StatusUnknown => "status_unknown",
        Verdict::IssuerUnreachable => "issuer_unreachable",
    }
}

pub(crate) fn reason_code(reason: InvalidReason) -> Option<&'static str> {
    match reason {
        InvalidReason::Unspecified => None,
        InvalidReason::Malformed => Some("malformed"),
        InvalidReason::CheckCharacter => Some("check_character"),
        InvalidReason::UnknownIssuer => Some("unknown_issuer"),
        InvalidReason::UnknownKey => Some("unknown_key"),
        InvalidReason::BadSignature => Some("bad_signature"),
        InvalidReason::NotYetValid => Some("not_yet_valid"),
        InvalidReason::Expired => Some("expired"),
        InvalidReason::Revoked => Some("revoked"),
        InvalidReason::UnknownVoucher => Some("unknown_voucher"),
        InvalidReason::OutOfScope => Some("out_of_scope"),
        InvalidReason::BoundElsewhere => Some("bound_elsewhere"),
        InvalidReason::KeyCompromised => Some("key_compromised"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the node answers a provider other than the one an emergency voucher is bound to.
    fn bound_elsewhere() -> Verification {
        Verification {
            verdict: Verdict::Invalid as i32,
            reason: InvalidReason::BoundElsewhere as i32,
            message: "This emergency voucher was issued for another provider.".into(),
            voucher: Some(VoucherFacts {
                issuer: "chemnitz".into(),
                issuer_name: "Chemnitz".into(),
                emergency: true,
                bound_provider: "chemnitz/klinikum".into(),
                remaining_medication_cents: Some(12_000),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_voucher_bound_elsewhere_says_to_whom_and_not_for_you() {
        let text = VerificationText(&bound_elsewhere()).to_string();
        assert!(text.starts_with("INVALID: "), "{text}");
        assert!(
            text.contains("NOT FOR YOU  this emergency voucher is bound to chemnitz/klinikum"),
            "{text}"
        );
        assert!(
            text.contains("kind         emergency voucher, bound to chemnitz/klinikum"),
            "{text}"
        );
        assert!(text.contains("medication   EUR 120.00 left"), "{text}");

        let value = verification_json(&bound_elsewhere());
        assert_eq!(value["verdict"], "invalid");
        assert_eq!(value["reason"], "bound_elsewhere");
        assert_eq!(value["voucher"]["emergency"], true);
        assert_eq!(value["voucher"]["bound_provider"], "chemnitz/klinikum");
        assert_eq!(value["voucher"]["remaining_medication_cents"], 12_000);

        let mut unnamed = bound_elsewhere();
        unnamed.voucher = None;
        let text = VerificationText(&unnamed).to_string();
        assert!(text.contains("bound to another provider"), "{text}");
    }

    #[test]
    fn an_ordinary_voucher_names_no_provider() {
        let record = VoucherRecord {
            short_code: "LEJ-7KQ4-M2XD-9FTR-WB3H-Q".into(),
            ..Default::default()
        };
        let text = RecordText {
            verb: "issued",
            record: &record,
            qr: None,
        }
        .to_string();
        assert!(text.starts_with("Voucher issued."), "{text}");
        assert!(
            !text.contains("bound") && !text.contains("emergency"),
            "{text}"
        );
        let value = record_json(&record);
        assert_eq!(value["emergency"], false);
        assert_eq!(value["bound_provider"], Value::Null);
    }
}
