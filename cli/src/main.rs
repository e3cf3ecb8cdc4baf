//! `schein`: the command-line client of the schein network, for clearing office staff
//! (issue, revoke, look up vouchers), providers (verify) and funders; and `schein demo`, a
//! local three-city federation that shows the whole flow.
//!
//! Exit codes (README, "Exit codes of `schein`"):
//! - 0 success; for `voucher verify`: the voucher is valid; for `claim submit`, `claim status`
//!   and `claim release`: the claim is settled; for `claim reject`: it is rejected, as asked;
//! - 1 the request failed (refused, unreachable, bad input) or its answer could not be written;
//! - 2 wrong usage (unknown option, malformed argument, options that do not go together);
//! - 3 `verify`: the voucher is invalid; 4 `verify`: its status could not be confirmed;
//! - 5 the claim is rejected (over the cap, revoked, period closed, …): it will not be paid;
//! - 6 the claim is pending: the issuing city cannot be reached now, the node delivers it later;
//! - 7 the claim is held as a possible duplicate: the clearing office decides.
//!
//! A reader that closes the pipe early (`schein voucher list | head -1`) changes none of them:
//! the output ends quietly.

mod claim;
mod client;
mod demo;
mod identity;
mod output;
mod report;
mod voucher;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What a command found, when it is more than plain success: each has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    VoucherInvalid,
    StatusUnknown,
    ClaimRejected,
    ClaimPending,
    ClaimHeld,
    LedgerContradicted,
}

const EXIT_FAILED: u8 = 1;

impl Outcome {
    fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::VoucherInvalid => 3,
            Outcome::StatusUnknown => 4,
            Outcome::ClaimRejected => 5,
            Outcome::ClaimPending => 6,
            Outcome::ClaimHeld => 7,
            Outcome::LedgerContradicted => 8,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "schein",
    version,
    about = "Anonymous treatment vouchers across the cities of Saxony"
)]
struct Cli {
    /// Identity file from your node's operator (`schein-node enroll`).
    #[arg(long, global = true, env = "SCHEIN_IDENTITY")]
    identity: Option<PathBuf>,
    /// Talk to this endpoint instead of the one in the identity file.
    #[arg(long, global = true, env = "SCHEIN_ENDPOINT")]
    endpoint: Option<String>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for a node: to connect, and then for each answer. A federation report
    /// asks every node at once and reports what came back within this time.
    #[arg(long, global = true, env = "SCHEIN_TIMEOUT", value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Vouchers: issue, verify, revoke, show, list.
    #[command(subcommand)]
    Voucher(voucher::VoucherCommand),
    /// Claims: submit, status, list (providers); held claims (offices).
    #[command(subcommand)]
    Claim(claim::ClaimCommand),
    /// The node's ledger of settlement events.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Aggregate report for a period: one node, or the whole federation (funders, offices).
    Report(report::ReportArgs),
    /// Close a period between the nodes, or show the result (offices).
    #[command(subcommand)]
    Clearing(report::ClearingCommand),
    /// Check that your node answers and accepts your identity.
    Status,
    /// Your own identity: renew its certificate before it expires.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Run a local federation of three cities and walk through issuing and verifying.
    Demo {
        /// Keep the nodes running, with their identity files in DIR, until Ctrl-C.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Fetch your node's ledger and check its hash chain and signed head (office). With
    /// `--peer`, have your node check that member's ledger against what it witnessed.
    Verify {
        /// Check this member's ledger instead: its whole chain against the head it signed to
        /// your node earlier and every receipt it gave your node. Exit code 8 if it changed its
        /// past.
        #[arg(long, value_name = "NODE")]
        peer: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            complain(format_args!("cannot start: {error}"));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(execute(cli));
    let written = output::finish();
    let code = match &result {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            complain(format_args!("{error:#}"));
            EXIT_FAILED
        }
    };
    // A reader that closed the pipe early ends the output quietly, and the exit code is still
    // the command's own: after `voucher issue | head -1` the voucher exists, and a script that
    // took a failure for "not issued" would issue a second one.
    if let Err(error) = written {
        let done = if result.is_ok() {
            "; the request itself was carried out"
        } else {
            ""
        };
        complain(format_args!(
            "the answer could not be written to standard output ({error}){done}"
        ));
        return ExitCode::from(EXIT_FAILED);
    }
    ExitCode::from(code)
}

/// A sentence on standard error; if even that cannot be written, the exit code still tells.
fn complain(message: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "schein: {message}");
}

async fn execute(cli: Cli) -> anyhow::Result<Outcome> {
    let out = output::Output { json: cli.json };
    let timeout = std::time::Duration::from_secs(cli.timeout);
    match cli.command {
        Command::Demo { keep } => demo::run(keep).await,
        Command::Identity(command) => {
            let path = cli.identity.clone().ok_or_else(|| {
                anyhow::anyhow!("no identity: pass --identity FILE or set SCHEIN_IDENTITY")
            })?;
            let client = client::Client::connect(cli.identity, cli.endpoint, timeout).await?;
            identity::execute(&client, &path, command, &out).await
        }
        Command::Status => {
            let client = client::Client::connect(cli.identity, cli.endpoint, timeout).await?;
            client.status().await?;
            out.status(&client);
            Ok(Outcome::Done)
        }
        Command::Claim(command) => {
            let client = client::Client::connect(cli.identity, cli.endpoint, timeout).await?;
            claim::execute(&client, command, &out).await
        }
        Command::Report(args) => {
            let client = client::Client::connect(cli.identity, cli.endpoint, timeout).await?;
            report::report(&client, args, &out).await
        }
        Command::Clearing(command) => {
            let client = client::Client::connect(cli.identity, cli.endpoint, timeout).await?;
            report::clearing(&client, command, &out).await
        }
        Command::Ledger(LedgerCommand::Verify { peer }) => {
            let client = client::Client::connect(cli.identity, cli.endpoint, timeout).await?;
            match peer {
                Some(peer) => claim::verify_peer_ledger(&client, &peer, &out).await,
                None => claim::verify_ledger(&client, &out).await,
            }
        }
        Command::Voucher(command) => {
            let client = client::Client::connect(cli.identity, cli.endpoint, timeout).await?;
            voucher::execute(&client, command, &out).await
        }
    }
}
