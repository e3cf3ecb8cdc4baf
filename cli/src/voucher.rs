//! `schein voucher …`: the office's and the provider's voucher commands.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Subcommand, ValueEnum};
use schein_proto::Day;
use schein_proto::money::Cents;
use schein_proto::v1::{
    IssueVoucherRequest, ListVouchersRequest, RevocationReason, RevokeVoucherRequest, Scope,
    ShowVoucherRequest, Verdict, Verification, VerifyVoucherRequest, VerifyVouchersRequest,
    VoucherRecord, VoucherState,
};

use crate::Outcome;
use crate::client::{Client, read_code};
use crate::output::Output;

/// Codes per `VerifyVouchers` request: the node's limit.
const VERIFY_BATCH: usize = 256;

#[derive(Subcommand, Debug)]
pub(crate) enum VoucherCommand {
    /// Issue a voucher (office). Prints the short code and the full code.
    Issue {
        /// First day of validity, YYYY-MM-DD (default: today).
        #[arg(long, value_parser = parse_day)]
        valid_from: Option<Day>,
        /// Last day of validity, YYYY-MM-DD (default: end of the quarter).
        #[arg(long, value_parser = parse_day)]
        valid_until: Option<Day>,
        /// Treatment cap in euros (default: the node's, EUR 500).
        #[arg(long, value_parser = parse_euros)]
        cap: Option<Cents>,
        /// Further kinds of care covered; ambulatory basic care is always included.
        #[arg(long = "scope", value_enum)]
        scopes: Vec<ScopeArg>,
        /// Write the full code as a QR code to this SVG file, for the printed card.
        #[arg(long, value_name = "FILE.svg")]
        qr: Option<PathBuf>,
        /// An emergency voucher, charged to the emergency budget, for the one provider named
        /// by --for-provider.
        #[arg(long, requires = "for_provider")]
        emergency: bool,
        /// The provider an emergency voucher is issued for, NODE/NAME as enrolled at that node,
        /// e.g. leipzig/klinikum-sued: only it may claim on the voucher. Only with --emergency.
        #[arg(long, value_name = "NODE/NAME", requires = "emergency", value_parser = parse_provider)]
        for_provider: Option<String>,
    },
    /// Raise a voucher's treatment cap (office). Above the node's threshold a second, different
    /// office identity must approve the same amount.
    Approve {
        code: String,
        /// The new cap in euros.
        #[arg(long, value_parser = parse_euros)]
        cap: Cents,
    },
    /// Check a voucher before treating (provider): full code or short code; `-` reads it from
    /// standard input.
    Verify {
        code: String,
        /// Also check that it covers this kind of care.
        #[arg(long = "for", value_enum)]
        for_scope: Option<ScopeArg>,
    },
    /// Check many vouchers at once (provider): one code per line from FILE (`-`: standard
    /// input), empty lines and lines starting with `#` skipped. Answers in the same order; the
    /// exit code is that of the worst answer.
    VerifyMany {
        file: PathBuf,
        /// Also check that each covers this kind of care.
        #[arg(long = "for", value_enum)]
        for_scope: Option<ScopeArg>,
    },
    /// Revoke a voucher of this office (lost, stolen, issued in error, replaced).
    Revoke {
        code: String,
        #[arg(long, value_enum)]
        reason: ReasonArg,
    },
    /// Show one voucher of this office.
    Show { code: String },
    /// List this office's vouchers, newest first.
    List {
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue where an earlier listing stopped.
        #[arg(long)]
        page_token: Option<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum ScopeArg {
    Ambulatory,
    Medication,
    PregnancyCare,
    SpecialistReferral,
    Dental,
}

impl From<ScopeArg> for Scope {
    fn from(arg: ScopeArg) -> Self {
        match arg {
            ScopeArg::Ambulatory => Scope::Ambulatory,
            ScopeArg::Medication => Scope::Medication,
            ScopeArg::PregnancyCare => Scope::PregnancyCare,
            ScopeArg::SpecialistReferral => Scope::SpecialistReferral,
            ScopeArg::Dental => Scope::Dental,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum ReasonArg {
    Lost,
    Stolen,
    IssuedInError,
    Replaced,
}

impl From<ReasonArg> for RevocationReason {
    fn from(arg: ReasonArg) -> Self {
        match arg {
            ReasonArg::Lost => RevocationReason::Lost,
            ReasonArg::Stolen => RevocationReason::Stolen,
            ReasonArg::IssuedInError => RevocationReason::IssuedInError,
            ReasonArg::Replaced => RevocationReason::Replaced,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum StateArg {
    Active,
    Revoked,
    Expired,
    NotYetValid,
}

impl From<StateArg> for VoucherState {
    fn from(arg: StateArg) -> Self {
        match arg {
            StateArg::Active => VoucherState::Active,
            StateArg::Revoked => VoucherState::Revoked,
            StateArg::Expired => VoucherState::Expired,
            StateArg::NotYetValid => VoucherState::NotYetValid,
        }
    }
}

fn parse_day(text: &str) -> Result<Day, String> {
    Day::parse(text).map_err(|e| e.to_string())
}

/// A provider as `NODE/NAME`; whether it is enrolled there only the node can tell.
fn parse_provider(text: &str) -> Result<String, String> {
    match text.trim().split_once('/') {
        Some((node, name)) if !node.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(format!("{node}/{name}"))
        }
        _ => Err(format!(
            "'{text}' is not NODE/NAME, the provider's node and its enrolled name (e.g. leipzig/klinikum-sued)"
        )),
    }
}

fn parse_euros(text: &str) -> Result<Cents, String> {
    Cents::parse_euros(text).map_err(|e| e.to_string())
}

pub(crate) async fn execute(
    client: &Client,
    command: VoucherCommand,
    out: &Output,
) -> anyhow::Result<Outcome> {
    match command {
        VoucherCommand::Issue {
            valid_from,
            valid_until,
            cap,
            scopes,
            qr,
            emergency,
            for_provider,
        } => {
            let request = IssueVoucherRequest {
                emergency,
                bound_provider: for_provider.unwrap_or_default(),
                valid_from: valid_from.map(Into::into),
                valid_until: valid_until.map(Into::into),
                scope: scopes.into_iter().map(|s| Scope::from(s) as i32).collect(),
                cap_cents: cap.map(|c| c.0),
            };
            let record = issue(client, request).await?;
            // The voucher exists now: show its codes before anything else can fail.
            out.voucher_record("issued", &record, qr.as_deref());
            if let Some(path) = &qr {
                write_qr(&record.full_code, path).context(
                    "the voucher was issued (codes above), but its QR code could not be written",
                )?;
            }
            Ok(Outcome::Done)
        }
        VoucherCommand::Approve { code, cap } => {
            let response = approve(client, &read_code(&code)?, cap).await?;
            if let Some(record) = &response.voucher {
                out.voucher_record("", record, None);
            }
            out.message(&response.message);
            Ok(Outcome::Done)
        }
        VoucherCommand::Verify { code, for_scope } => {
            let code = read_code(&code)?;
            let verification = verify(client, &code, for_scope.map(Scope::from)).await?;
            out.verification(&verification);
            Ok(outcome_of(&verification))
        }
        VoucherCommand::VerifyMany { file, for_scope } => {
            let text = if file.as_os_str() == "-" {
                read_code("-")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let codes: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            if codes.is_empty() {
                return Err(anyhow!("{} holds no voucher codes", file.display()));
            }
            let scope = for_scope.map_or(Scope::Unspecified, Scope::from);
            let mut outcome = Outcome::Done;
            for chunk in codes.chunks(VERIFY_BATCH) {
                let request = VerifyVouchersRequest {
                    vouchers: chunk
                        .iter()
                        .map(|code| VerifyVoucherRequest {
                            code: (*code).to_owned(),
                            for_scope: scope as i32,
                        })
                        .collect(),
                };
                let answers = client
                    .provider()
                    .verify_vouchers(request)
                    .await
                    .map_err(|s| client.explain(&s))?
                    .into_inner();
                for verification in &answers.verifications {
                    out.verification(verification);
                    outcome = match (outcome, outcome_of(verification)) {
                        (Outcome::VoucherInvalid, _) | (_, Outcome::VoucherInvalid) => {
                            Outcome::VoucherInvalid
                        }
                        (Outcome::StatusUnknown, _) | (_, Outcome::StatusUnknown) => {
                            Outcome::StatusUnknown
                        }
                        _ => Outcome::Done,
                    };
                }
            }
            Ok(outcome)
        }
        VoucherCommand::Revoke { code, reason } => {
            let record = revoke(client, &read_code(&code)?, reason.into()).await?;
            out.voucher_record("revoked", &record, None);
            Ok(Outcome::Done)
        }
        VoucherCommand::Show { code } => {
            let record = client
                .office()
                .show_voucher(ShowVoucherRequest {
                    code: read_code(&code)?,
                })
                .await
                .map_err(|s| client.explain(&s))?
                .into_inner();
            out.voucher_record("", &record, None);
            Ok(Outcome::Done)
        }
        VoucherCommand::List {
            state,
            limit,
            page_token,
        } => {
            let response = client
                .office()
                .list_vouchers(ListVouchersRequest {
                    limit,
                    page_token: page_token.unwrap_or_default(),
                    state: state
                        .map(VoucherState::from)
                        .unwrap_or(VoucherState::Unspecified) as i32,
                })
                .await
                .map_err(|s| client.explain(&s))?
                .into_inner();
            out.voucher_list(&response);
            Ok(Outcome::Done)
        }
    }
}

pub(crate) async fn issue(
    client: &Client,
    request: IssueVoucherRequest,
) -> anyhow::Result<VoucherRecord> {
    Ok(client
        .office()
        .issue_voucher(request)
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner())
}

pub(crate) async fn approve(
    client: &Client,
    code: &str,
    cap: Cents,
) -> anyhow::Result<schein_proto::v1::ApproveCapResponse> {
    Ok(client
        .office()
        .approve_cap(schein_proto::v1::ApproveCapRequest {
            code: code.to_owned(),
            new_cap_cents: cap.0,
        })
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner())
}

pub(crate) async fn verify(
    client: &Client,
    code: &str,
    for_scope: Option<Scope>,
) -> anyhow::Result<Verification> {
    Ok(client
        .provider()
        .verify_voucher(VerifyVoucherRequest {
            code: code.to_owned(),
            for_scope: for_scope.unwrap_or(Scope::Unspecified) as i32,
        })
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner())
}

pub(crate) async fn revoke(
    client: &Client,
    code: &str,
    reason: RevocationReason,
) -> anyhow::Result<VoucherRecord> {
    Ok(client
        .office()
        .revoke_voucher(RevokeVoucherRequest {
            code: code.to_owned(),
            reason: reason as i32,
        })
        .await
        .map_err(|s| client.explain(&s))?
        .into_inner())
}

pub(crate) fn outcome_of(verification: &Verification) -> Outcome {
    match verification.verdict() {
        Verdict::Valid => Outcome::Done,
        Verdict::StatusUnknown | Verdict::IssuerUnreachable => Outcome::StatusUnknown,
        Verdict::Invalid | Verdict::Unspecified => Outcome::VoucherInvalid,
    }
}

/// Writes `full_code` as a QR code (SVG) for the printed card.
pub(crate) fn write_qr(full_code: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let code =
        qrcode::QrCode::with_error_correction_level(full_code.as_bytes(), qrcode::EcLevel::M)
            .map_err(|e| anyhow!("cannot make a QR code: {e}"))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(320, 320)
        .quiet_zone(true)
        .build();
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}
