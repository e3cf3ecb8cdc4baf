//! Printing results: sentences and aligned fields for people, JSON for scripts. Nothing printed
//! here says anything about a person; vouchers carry no such data.

use schein_proto::Day;
use schein_proto::money::Cents;
use schein_proto::v1::{
    ClaimRecord, ClaimState, InvalidReason, ListVouchersResponse, RejectReason, RevocationReason,
    Scope, Verdict, Verification, VoucherRecord, VoucherState,
};
use serde_json::{Value, json};

use crate::client::Client;

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

fn record_json(record: &VoucherRecord) -> Value {
    json!({
        "short_code": record.short_code,
        "full_code": record.full_code,
        "issuer": record.issuer,
        "state": state_name(record.state()),
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
            println!("{value}");
            return;
        }
        if !verb.is_empty() {
            println!("Voucher {verb}.");
        }
        println!("  short code   {}", record.short_code);
        println!("  state        {}", state_name(record.state()));
        print_terms(
            record.valid_from,
            record.valid_until,
            &record.scope,
            record.cap_cents,
        );
        println!("  claimed      {}", Cents(record.claimed_cents));
        println!("  issued on    {}", day(record.issued_on));
        if let Some(on) = record.revoked_on {
            println!(
                "  revoked      {} ({})",
                day(Some(on)),
                reason_name(record.revocation_reason())
            );
        }
        if let Some(path) = qr {
            println!("  QR code      {}", path.display());
        }
        println!("  full code    {}", record.full_code);
    }

    pub(crate) fn voucher_list(&self, response: &ListVouchersResponse) {
        if self.json {
            let vouchers: Vec<Value> = response.vouchers.iter().map(record_json).collect();
            println!(
                "{}",
                json!({"vouchers": vouchers, "next_page_token": response.next_page_token})
            );
            return;
        }
        if response.vouchers.is_empty() {
            println!("No vouchers.");
        }
        for record in &response.vouchers {
            println!(
                "{:<28} {:<14} {} to {}  cap {:<12} claimed {}",
                record.short_code,
                state_name(record.state()),
                day(record.valid_from),
                day(record.valid_until),
                cents(record.cap_cents),
                Cents(record.claimed_cents)
            );
        }
        if !response.next_page_token.is_empty() {
            println!("more: --page-token {}", response.next_page_token);
        }
    }

    pub(crate) fn verification(&self, verification: &Verification) {
        let facts = verification.voucher.as_ref();
        if self.json {
            println!(
                "{}",
                json!({
                    "verdict": verdict_name(verification.verdict()),
                    "reason": reason_code(verification.reason()),
                    "message": verification.message,
                    "voucher": facts.map(|f| json!({
                        "issuer": f.issuer,
                        "issuer_name": f.issuer_name,
                        "short_code": f.short_code,
                        "valid_from": day(f.valid_from),
                        "valid_until": day(f.valid_until),
                        "scope": scopes(&f.scope),
                        "cap_cents": f.cap_cents,
                        "remaining_cap_cents": f.remaining_cap_cents,
                    })),
                })
            );
            return;
        }
        let head = match verification.verdict() {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::StatusUnknown => "NOT CONFIRMED",
            Verdict::IssuerUnreachable => "CANNOT CHECK NOW",
            Verdict::Unspecified => "UNKNOWN ANSWER",
        };
        println!("{head}: {}", verification.message);
        if let Some(f) = facts {
            println!("  issuer       {} ({})", f.issuer_name, f.issuer);
            if !f.short_code.is_empty() {
                println!("  short code   {}", f.short_code);
            }
            print_terms(f.valid_from, f.valid_until, &f.scope, f.cap_cents);
            if f.remaining_cap_cents.is_some() {
                println!("  left         {}", cents(f.remaining_cap_cents));
            }
        }
    }

    pub(crate) fn status(&self, client: &Client) {
        let id = &client.identity;
        if self.json {
            println!(
                "{}",
                json!({"node": id.node, "endpoint": client.endpoint, "role": id.role.as_str(), "name": id.name, "serving": true})
            );
        } else {
            println!(
                "Node {} ({}) at {} is serving and accepts you as {} '{}'.",
                id.node_name, id.node, client.endpoint, id.role, id.name
            );
        }
    }
}

/// The terms of a voucher, as the office and the provider both see them.
fn print_terms(
    from: Option<schein_proto::v1::Day>,
    until: Option<schein_proto::v1::Day>,
    scope: &[i32],
    cap_cents: Option<i64>,
) {
    println!("  valid        {} to {}", day(from), day(until));
    println!("  covers       {}", scopes(scope).join(", "));
    println!("  cap          {}", cents(cap_cents));
}

fn claim_state_name(state: ClaimState) -> &'static str {
    match state {
        ClaimState::Unspecified => "unknown",
        ClaimState::Pending => "pending",
        ClaimState::Settled => "settled",
        ClaimState::Rejected => "rejected",
        ClaimState::Held => "held",
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

impl Output {
    pub(crate) fn message(&self, message: &str) {
        if !self.json {
            println!("{message}");
        }
    }

    pub(crate) fn claim(&self, claim: &ClaimRecord) {
        if self.json {
            println!("{}", claim_json(claim));
            return;
        }
        println!(
            "Claim {}: {}. {}",
            claim.claim_id,
            claim_state_name(claim.state()),
            claim.message
        );
        println!(
            "  voucher      {} ({})",
            claim.voucher_short_code, claim.issuer
        );
        println!("  service on   {}", day(claim.service_date));
        println!("  amount       {}", Cents(claim.amount_cents));
        if claim.issuer_ledger_seq > 0 {
            println!(
                "  receipt      entry {} of the issuer's ledger",
                claim.issuer_ledger_seq
            );
        }
    }

    pub(crate) fn claims(&self, claims: &[ClaimRecord]) {
        if self.json {
            let claims: Vec<Value> = claims.iter().map(claim_json).collect();
            println!("{}", json!({ "claims": claims }));
            return;
        }
        if claims.is_empty() {
            println!("No claims.");
        }
        for claim in claims {
            println!(
                "{:<18} {:<9} {:<28} {}  {:>12}  {}",
                claim.claim_id,
                claim_state_name(claim.state()),
                claim.voucher_short_code,
                day(claim.service_date),
                Cents(claim.amount_cents).to_string(),
                claim.provider
            );
        }
    }

    pub(crate) fn ledger(&self, node: &str, checked: &schein_proto::ledger::CheckedLedger) {
        let hash = data_encoding::HEXLOWER.encode(&checked.head.hash);
        if self.json {
            println!(
                "{}",
                json!({"node": node, "entries": checked.entries, "head_hash": hash, "valid": true})
            );
        } else {
            println!(
                "The ledger of node {node} checks out: {} entries, each chained to the one before; head {} signed by the node.",
                checked.entries,
                &hash[..16.min(hash.len())]
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
    }
}
