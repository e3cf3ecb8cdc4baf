//! `schein-node`: create, configure and run a clearing office's node.
//!
//! Exit codes: 0 success, 1 failure at run time, 64 invalid configuration or arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use schein_node::client::IdentityFile;
use schein_node::config::{CONFIG_FILE, Config};
use schein_node::fees::CatalogueCategory;
use schein_node::init::{InitOptions, enroll_with_p12, init};
use schein_node::p12::Password;
use schein_node::pki::Role;
use schein_node::quorum;
use schein_node::roster::{MemberEntry, Roster};
use schein_node::server::run;
use tokio::sync::oneshot;

/// Exit code for unusable configuration (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(name = "schein-node", version, about = "A schein clearing-office node")]
struct Cli {
    /// The node's configuration file.
    #[arg(long, global = true, env = "SCHEIN_NODE_CONFIG", default_value = CONFIG_FILE)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a node in a directory: keys, CA, TLS certificate, configuration, roster, member
    /// entry and a first office identity.
    Init {
        /// Directory to create the node in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Node id: lower case, e.g. leipzig.
        #[arg(long)]
        id: String,
        /// Display name, e.g. Leipzig.
        #[arg(long)]
        name: String,
        /// Short-code prefix, 2 to 5 letters, e.g. LEJ.
        #[arg(long)]
        prefix: String,
        /// Address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: String,
        /// How others reach this node, e.g. https://schein.leipzig.example:7443.
        #[arg(long)]
        endpoint: String,
        /// Address and port of the web console ("off": none).
        #[arg(long, default_value = "0.0.0.0:8443")]
        web_listen: String,
        /// Further DNS names for the node's certificate.
        #[arg(long = "hostname")]
        hostnames: Vec<String>,
        /// Name of the first office identity.
        #[arg(long, default_value = "office")]
        office: String,
    },
    /// Issue a client identity (certificate and key in one file) for office staff, a provider
    /// or a funder, and the same identity as a password-protected .p12 file for browsers.
    Enroll {
        #[arg(long, value_parser = ["office", "provider", "funder"])]
        role: String,
        /// A handle such as praxis-nord or team-1: no personal data.
        #[arg(long)]
        name: String,
        /// Days the certificate is valid (short: its holder renews it with `schein identity renew`).
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Where to write the identity file (default: identities/ROLE-NAME.toml); the .p12
        /// file goes beside it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The client identities enrolled here: list, revoke, export as .p12.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Show or change the roster: the members this node trusts.
    Roster {
        #[command(subcommand)]
        command: RosterCommand,
    },
    /// Print this node's public member entry, to hand to the other operators.
    Member,
    /// This node's voucher signing keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// This node's CA: rotate it (the members must sign), then activate it.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Print a member's fee schedule in euros: per fee code its base amount and the most the
    /// member pays for one unit (base times the catalogue's factor).
    Fees {
        /// The member's id; default: this node.
        member: Option<String>,
    },
    /// Check the configuration, keys and roster without starting.
    Check,
    /// Run the node until SIGINT or SIGTERM. SIGHUP reloads the roster.
    Run,
    /// Write a consistent snapshot of the node's store to FILE (atomically replaced). A running
    /// node makes it itself (asked through its control socket, settling on meanwhile);
    /// otherwise the store is opened here. Keys and configuration are not in it: back them up
    /// apart.
    Backup { file: PathBuf },
    /// Restore a backup of this node into its empty data directory. At its next start the node
    /// recovers, from every peer, the settlements it made after the backup before it settles
    /// again (`schein-node status` shows how far it got).
    Restore { file: PathBuf },
    /// Where the node stands: recovering after a restore (per peer), or serving.
    Status,
    /// Steer a recovery after a restore.
    Recover {
        /// Stop waiting for this peer (gone for good). Receipts only it holds are not recovered:
        /// settlements it got after the backup may be paid a second time.
        #[arg(long = "accept-missing", value_name = "PEER", required = true)]
        accept_missing: String,
    },
    /// Bring the store to this version's format after an upgrade (a node refuses to start on
    /// an older one). Run it with the node stopped: it copies the store aside first, then
    /// migrates; running it again changes nothing.
    Migrate {
        /// Where to copy the store before migrating (default: beside the data directory, named
        /// after the old format and the time).
        #[arg(long)]
        backup: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum IdentityCommand {
    /// Every identity enrolled here, with its last day and whether it was revoked.
    List,
    /// Revoke every certificate of an identity (a lost laptop, someone who left): refused at
    /// once by this node, also on connections already open, and within a minute by every member.
    Revoke {
        /// NAME, or ROLE/NAME where a name is used by several roles (provider/praxis-nord).
        handle: String,
    },
    /// Write an identity as a password-protected .p12 file, which Windows, macOS and Firefox
    /// import with a double click. The password is the first line of --password-file, else
    /// SCHEIN_P12_PASSWORD, else generated and printed once.
    Export {
        /// The identity file (identities/ROLE-NAME.toml).
        identity: PathBuf,
        /// Where to write the .p12 file (default: beside the identity file); never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// Environment variable with the password for `identity export`. Not a command-line option:
/// arguments are visible to every user of the machine.
const P12_PASSWORD_ENV: &str = "SCHEIN_P12_PASSWORD";

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Make a new signing key and sign the roster version that lists it with the current key:
    /// the new key signs vouchers from --from on (default today), the current key stops after
    /// that day, and everything it signed stays valid. The other members take the new version
    /// up by themselves within a minute.
    Rotate {
        /// First day of the new key (YYYY-MM-DD), today or later.
        #[arg(long)]
        from: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Make a new CA and a node certificate it signs (in keys/next/), and propose the roster
    /// version that lists it, with the current CA still taken for --overlap-days. The members
    /// co-sign it like any change of an entry; once adopted, `ca activate`.
    Rotate {
        #[arg(long, default_value_t = 90)]
        overlap_days: u16,
        /// Where to write the proposal (default: proposals/roster-vN.toml).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Put the new CA and node certificate from keys/next/ in place (the old ones are kept in
    /// keys/old-DATE/), once the members adopted the version that lists it. Restart the node
    /// afterwards; identities of the old CA work until its last day, `schein identity renew`
    /// moves them to the new CA.
    Activate,
}

#[derive(Subcommand, Debug)]
enum RosterCommand {
    /// Propose the next roster version and sign it: a city joins (--add), leaves or is expelled
    /// (--remove), gets a new endpoint or CA (--replace), a key declared compromised
    /// (--compromised), a new threshold. Writes the proposal for the other operators to sign.
    Propose {
        /// A joining city's member entry (its operator's `schein-node member`).
        #[arg(long, value_name = "MEMBER_FILE")]
        add: Vec<PathBuf>,
        /// A member's new entry, replacing the one in the roster.
        #[arg(long, value_name = "MEMBER_FILE")]
        replace: Vec<PathBuf>,
        /// A member that leaves or is expelled.
        #[arg(long, value_name = "ID")]
        remove: Vec<String>,
        /// MEMBER/KEY_ID@YYYY-MM-DD: vouchers that key signed for later days are void.
        #[arg(long, value_name = "MEMBER/KEY_ID@DAY")]
        compromised: Vec<String>,
        /// Signatures of members a change needs from this version on.
        #[arg(long)]
        threshold: Option<u32>,
        /// Where to write the proposal (default: proposals/roster-vN.toml in the node's directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a proposal's changes and fingerprints, then add this node's signature to it. With
    /// enough signatures this node adopts it, and the other members take it up by themselves.
    Sign {
        proposal: PathBuf,
        /// Sign without asking (after reading what `roster status FILE` shows).
        #[arg(long)]
        yes: bool,
    },
    /// The roster held (version, threshold, members), or where a proposal stands.
    Status { proposal: Option<PathBuf> },
    /// Adopt a version signed by enough members (the others take it up by themselves).
    /// --first: a joining city's first install of the federation's roster, taken on trust
    /// after comparing the fingerprints it prints with the operators.
    Adopt {
        version_file: PathBuf,
        #[arg(long)]
        first: bool,
        /// With --first: install without asking (after comparing the fingerprints).
        #[arg(long)]
        yes: bool,
    },
    /// Add another member's entry (founding only: before the members signed a version).
    Add {
        member_file: PathBuf,
        /// Replace the member with the same id (key rotation, new endpoint). Compare the
        /// fingerprint with its operator first.
        #[arg(long)]
        replace: bool,
    },
    /// Remove a member (founding only: before the members signed a version).
    Remove { id: String },
    /// List the members.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => {
            eprintln!("schein-node: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(error)) => {
            eprintln!("schein-node: {error:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(schein_node::config::ConfigError),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::load(path).map_err(Failure::Config)
}

fn execute(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Init {
            dir,
            id,
            name,
            prefix,
            listen,
            endpoint,
            web_listen,
            hostnames,
            office,
        } => {
            let created = init(&InitOptions {
                dir,
                node_id: id,
                name,
                prefix,
                listen,
                endpoint,
                web_listen: (web_listen != "off").then_some(web_listen),
                hostnames,
                office_name: office,
            })
            .context("cannot create the node")?;
            println!("node created:");
            println!("  configuration    {}", created.config_path.display());
            println!(
                "  member entry     {}  (hand it to the other operators)",
                created.member_path.display()
            );
            println!(
                "  office identity  {}",
                created.office_identity_path.display()
            );
            println!(
                "next: add the other members' entries with `schein-node roster add FILE`, then `schein-node run`"
            );
            Ok(())
        }
        Command::Enroll {
            role,
            name,
            days,
            out,
        } => {
            let config = load_config(&cli.config)?;
            let role: Role = role.parse().context("unknown role")?;
            let out = out.unwrap_or_else(|| {
                config
                    .base_dir
                    .join("identities")
                    .join(format!("{role}-{name}.toml"))
            });
            let enrolled =
                enroll_with_p12(&config, role, &name, days, &out).context("cannot enroll")?;
            println!("{role} identity '{name}' written to {}", out.display());
            println!(
                "and for browsers to {}; hand both over privately, they hold a private key",
                enrolled.p12_path.display()
            );
            print_password(&enrolled.p12_path, &enrolled.password);
            Ok(())
        }
        Command::Identity {
            command:
                IdentityCommand::Export {
                    identity,
                    out,
                    password_file,
                },
        } => export_identity(&identity, out, password_file.as_deref()),
        Command::Identity {
            command: IdentityCommand::List,
        } => {
            let config = load_config(&cli.config)?;
            let identities = schein_node::enrolled::load(&config.base_dir)
                .context("cannot read the register of identities")?;
            if identities.is_empty() {
                println!("no identities enrolled at this node yet (schein-node enroll)");
            }
            for identity in identities {
                let state = match &identity.revoked_on {
                    Some(day) => format!("REVOKED on {day}"),
                    None => format!("valid until {}", identity.valid_until),
                };
                println!("{:<40} {state}", identity.handle());
            }
            Ok(())
        }
        Command::Identity {
            command: IdentityCommand::Revoke { handle },
        } => {
            let config = load_config(&cli.config)?;
            let revoked = schein_node::enrolled::revoke(
                &config.base_dir,
                &handle,
                schein_proto::Day::today(),
            )
            .context("cannot revoke")?;
            if revoked.is_empty() {
                println!("{handle} was revoked already; nothing changed");
            } else {
                println!(
                    "revoked {} certificate(s) of {handle}: a running node refuses them within a second, also on open connections; the other members within a minute",
                    revoked.len()
                );
            }
            Ok(())
        }
        Command::Roster { command } => roster_command(&cli.config, command),
        Command::Key {
            command: KeyCommand::Rotate { from },
        } => rotate_key(&cli.config, from.as_deref()),
        Command::Ca {
            command: CaCommand::Rotate { overlap_days, out },
        } => rotate_ca(&cli.config, overlap_days, out),
        Command::Ca {
            command: CaCommand::Activate,
        } => activate_ca(&cli.config),
        Command::Member => {
            let config = load_config(&cli.config)?;
            let me = config
                .roster
                .member(config.node_id())
                .context("this node is missing from its roster")?;
            print!("{}", me.entry.to_toml());
            eprintln!("fingerprint of this member's CA: {}", me.fingerprint());
            eprintln!("its fee schedule in euros: schein-node fees");
            Ok(())
        }
        Command::Fees { member } => {
            let config = load_config(&cli.config)?;
            let id = member.as_deref().unwrap_or(config.node_id());
            let member = config
                .roster
                .member(id)
                .with_context(|| format!("no member '{id}' in the roster"))?;
            print!("{}", fee_table(member));
            Ok(())
        }
        Command::Check => {
            let config = load_config(&cli.config)?;
            println!(
                "configuration of node '{}' is valid; {} members in the roster",
                config.node_id(),
                config.roster.members().count()
            );
            Ok(())
        }
        Command::Backup { file } => {
            let config = load_config(&cli.config)?;
            backup(&config, &file)?;
            Ok(())
        }
        Command::Restore { file } => {
            let config = load_config(&cli.config)?;
            let header =
                schein_node::store::backup::restore(&file, config.node_id(), &config.data_dir)
                    .context("restore failed")?;
            println!(
                "restored node {} into {} from the backup taken at unix time {} (ledger entry {}).\n\
                 At its next start the node recovers the settlements it made since from its peers \
                 and settles nothing until then; `schein-node status` shows how far it got.",
                header.node,
                config.data_dir.display(),
                header.created_at,
                header.ledger_seq
            );
            Ok(())
        }
        Command::Status => {
            let config = load_config(&cli.config)?;
            print!(
                "{}",
                ask_or_open(&config, "status", |store| {
                    schein_node::domain::recovery::describe(store).map_err(anyhow::Error::from)
                })?
            );
            Ok(())
        }
        Command::Recover { accept_missing } => {
            let config = load_config(&cli.config)?;
            eprintln!(
                "warning: recovery stops waiting for '{accept_missing}'. Settlements this node made \
                 for it after the backup are not recovered and may be paid a second time: check \
                 the next clearing statement with '{accept_missing}'."
            );
            let request = format!("accept-missing {accept_missing}");
            ask_or_open(&config, &request, |store| {
                let runtime = tokio::runtime::Runtime::new()?;
                match runtime.block_on(schein_node::domain::recovery::accept_missing(
                    store,
                    &accept_missing,
                ))? {
                    true => Ok(String::new()),
                    false => Err(anyhow::anyhow!("the node is not recovering")),
                }
            })?;
            Ok(())
        }
        Command::Migrate { backup } => {
            let config = load_config(&cli.config)?;
            let done = schein_node::store::migrate(&config.data_dir, backup.as_deref())
                .with_context(|| format!("migrating the store in {}", config.data_dir.display()))?;
            match done.backup {
                None => println!(
                    "the store in {} has format {} already; nothing to do",
                    config.data_dir.display(),
                    done.to
                ),
                Some(backup) => println!(
                    "store migrated from format {} to {}; the store as it was is in {}",
                    done.from,
                    done.to,
                    backup.display()
                ),
            }
            Ok(())
        }
        Command::Run => {
            let config = load_config(&cli.config)?;
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(serve(config))?;
            Ok(())
        }
    }
}

/// Asks the running node through its control socket; if none runs, opens the store and does
/// the same with `offline`.
fn ask_or_open(
    config: &Config,
    request: &str,
    offline: impl FnOnce(&schein_node::store::Store) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    match runtime.block_on(schein_node::control::request(&config.base_dir, request)) {
        Ok(text) => Ok(text),
        Err(schein_node::control::ControlError::NotRunning(_)) => {
            drop(runtime);
            let store = schein_node::store::Store::open(&config.data_dir).with_context(|| {
                format!(
                    "cannot open {} (if the node runs, its control socket {} does not answer)",
                    config.data_dir.display(),
                    schein_node::control::socket_path(&config.base_dir).display()
                )
            })?;
            offline(&store)
        }
        Err(error) => Err(error.into()),
    }
}

fn backup(config: &Config, file: &Path) -> anyhow::Result<()> {
    // The running node writes the file itself: give it a path that means the same there.
    let file = std::path::absolute(file).context("the backup file's path")?;
    let text = ask_or_open(config, &format!("backup {}", file.display()), |store| {
        let header = store.backup(config.node_id(), &file)?;
        Ok(format!(
            "ledger entry {}, {} entries\n",
            header.ledger_seq, header.entries
        ))
    })?;
    print!("backup written to {}: {text}", file.display());
    Ok(())
}

fn roster_command(config_path: &Path, command: RosterCommand) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let path = &config.roster_path;
    let signed_from = config.roster.version();
    if signed_from > 0
        && matches!(
            command,
            RosterCommand::Add { .. } | RosterCommand::Remove { .. }
        )
    {
        return Err(anyhow::anyhow!(
            "the members sign the roster since version 1 (this node holds version {signed_from}): propose the change with `schein-node roster propose`"
        )
        .into());
    }
    match command {
        RosterCommand::Propose {
            add,
            replace,
            remove,
            compromised,
            threshold,
            out,
        } => propose(&config, add, replace, remove, &compromised, threshold, out)?,
        RosterCommand::Sign { proposal, yes } => sign_proposal(&config, &proposal, yes)?,
        RosterCommand::Status { proposal } => roster_status(&config, proposal.as_deref())?,
        RosterCommand::Adopt {
            version_file,
            first,
            yes,
        } => adopt_version(&config, &version_file, first, yes)?,
        RosterCommand::Add {
            member_file,
            replace,
        } => {
            let entry = MemberEntry::load(&member_file).context("cannot add the member")?;
            let fingerprint = entry
                .validate()
                .context("cannot add the member")?
                .fingerprint();
            if entry.id == config.node_id() {
                return Err(anyhow::anyhow!("that is this node's own entry").into());
            }
            let id = entry.id.clone();
            if config
                .roster
                .member(&id)
                .is_some_and(|held| held.entry == entry)
            {
                println!(
                    "member '{id}' is in the roster already with this very entry; nothing changed"
                );
                println!("fingerprint of its CA: {fingerprint}");
                return Ok(());
            }
            if config.roster.member(&id).is_some() && !replace {
                return Err(anyhow::anyhow!(
                    "member '{id}' is in the roster already; to replace its entry, check the fingerprint {fingerprint} with its operator and add --replace"
                )
                .into());
            }
            let (roster, replaced) = config
                .roster
                .upsert(entry)
                .context("cannot add the member")?;
            roster.save(path).context("cannot save the roster")?;
            let verb = if replaced { "replaced" } else { "added" };
            println!("member '{id}' {verb}; a running node takes it up on SIGHUP or restart");
            println!("fingerprint of its CA: {fingerprint}");
            println!(
                "compare it with the fingerprint its operator reads from `schein-node member`"
            );
        }
        RosterCommand::Remove { id } => {
            if id == config.node_id() {
                return Err(anyhow::anyhow!("a node cannot remove itself from its roster").into());
            }
            let roster = config
                .roster
                .without(&id)
                .context("cannot remove the member")?
                .with_context(|| format!("no member '{id}' in the roster"))?;
            roster.save(path).context("cannot save the roster")?;
            println!("member '{id}' removed; a running node takes it up on SIGHUP or restart");
        }
        RosterCommand::List => {
            for member in config.roster.members() {
                println!(
                    "{:<12} {:<20} {:<7} {:<6} {}",
                    member.id(),
                    member.name(),
                    format!("{:?}", member.entry.kind).to_lowercase(),
                    member.entry.prefix.as_deref().unwrap_or("-"),
                    member.entry.endpoint.as_deref().unwrap_or("-")
                );
                println!("{:<12} CA fingerprint {}", "", member.fingerprint());
            }
        }
    }
    Ok(())
}

/// `roster propose`: the next version with the edits, signed by this node.
fn propose(
    config: &Config,
    add: Vec<PathBuf>,
    replace: Vec<PathBuf>,
    remove: Vec<String>,
    compromised: &[String],
    threshold: Option<u32>,
    out: Option<PathBuf>,
) -> Result<(), Failure> {
    let load = |paths: Vec<PathBuf>| -> anyhow::Result<Vec<MemberEntry>> {
        paths
            .iter()
            .map(|p| MemberEntry::load(p).map_err(anyhow::Error::from))
            .collect()
    };
    let compromised = compromised
        .iter()
        .map(|text| {
            let (member, rest) = text.split_once('/').context("write MEMBER/KEY_ID@DAY")?;
            let (key_id, day) = rest.split_once('@').context("write MEMBER/KEY_ID@DAY")?;
            let day = schein_proto::Day::parse(day).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((member.to_owned(), key_id.to_owned(), day))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let edits = quorum::Edits {
        add: load(add)?,
        replace: load(replace)?,
        remove,
        threshold,
        compromised,
    };
    let next = quorum::propose(&config.roster, &edits, schein_proto::Day::today())
        .context("cannot propose")?;
    let mut signed = quorum::SignedRoster::new(&next);
    signed.sign(config.node_id(), &config.signing_key);
    let out = proposal_path(config, next.version(), out);
    signed.save(&out).context("cannot write the proposal")?;
    let tally = quorum::tally(&config.roster, &signed, schein_proto::Day::today())
        .context("the proposal does not check")?;
    print!("{}", quorum::describe(&config.roster, &tally));
    println!("proposal written to {}, signed by this node", out.display());
    println!(
        "send it to the other operators; each compares the changes and fingerprints and runs `schein-node roster sign FILE`"
    );
    Ok(())
}

/// Asks the operator to go on: yes with `--yes`, else on a terminal by a typed "y".
fn confirm(yes: bool, question: &str) -> Result<(), Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow::anyhow!(
            "nothing done: read the above, compare the fingerprints, then run the command again with --yes"
        )
        .into());
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if matches!(answer.trim(), "y" | "Y" | "j" | "J" | "yes" | "ja") {
        Ok(())
    } else {
        Err(anyhow::anyhow!("nothing done").into())
    }
}

/// The version after the roster held with this node's `entry` replaced, signed by this node.
fn own_proposal(
    config: &Config,
    entry: MemberEntry,
    today: schein_proto::Day,
) -> anyhow::Result<(Roster, quorum::SignedRoster)> {
    let next = quorum::propose(
        &config.roster,
        &quorum::Edits {
            replace: vec![entry],
            ..Default::default()
        },
        today,
    )?;
    let mut signed = quorum::SignedRoster::new(&next);
    signed.sign(config.node_id(), &config.signing_key);
    Ok((next, signed))
}

/// Where a proposal goes: `out`, else `proposals/roster-vN.toml` in the node's directory.
fn proposal_path(config: &Config, version: u64, out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| {
        config
            .base_dir
            .join("proposals")
            .join(format!("roster-v{version}.toml"))
    })
}

/// `roster sign`: shows what is signed, signs when the operator agrees, and adopts once the
/// signatures suffice.
fn sign_proposal(config: &Config, path: &Path, yes: bool) -> Result<(), Failure> {
    let mut signed = quorum::SignedRoster::load(path).context("cannot read the proposal")?;
    let held = &config.roster;
    let today = schein_proto::Day::today();
    let own = held
        .member(config.node_id())
        .map(|m| m.entry.clone())
        .context("this node is not in its own roster")?;
    let names_us = signed
        .roster()
        .ok()
        .and_then(|r| r.member(config.node_id()).map(|m| m.entry == own))
        == Some(true);
    if held.version() == 0 && held.members().count() == 1 && names_us {
        // A joining city signs the version that names it, before it holds any.
        let roster = signed.roster().context("cannot read the proposal")?;
        println!(
            "version {} names this node '{}' as a member; its members' CA fingerprints:",
            roster.version(),
            config.node_id()
        );
        for member in roster.members() {
            println!("  {:<12} {}", member.id(), member.fingerprint());
        }
        println!("compare them with the operators by phone before signing");
        confirm(yes, "Sign as the joining member?")?;
        signed.sign(config.node_id(), &config.signing_key);
        signed.save(path).context("cannot write the proposal")?;
        println!(
            "signed as the joining member '{}'; once the members adopt it, install it here with `schein-node roster adopt FILE --first`",
            config.node_id()
        );
        return Ok(());
    }
    let tally = quorum::tally(held, &signed, today)
        .map_err(|error| anyhow::anyhow!("not signed: {error}"))?;
    print!("{}", quorum::describe(held, &tally));
    confirm(yes, "Sign this version?")?;
    signed.sign(config.node_id(), &config.signing_key);
    signed.save(path).context("cannot write the proposal")?;
    let tally = quorum::tally(held, &signed, today).context("cannot check the proposal")?;
    match tally.complete(held) {
        Ok(()) => {
            let version = quorum::History::beside(&config.roster_path)
                .adopt(held.version(), &signed, &config.roster_path)
                .context("cannot adopt the version")?;
            println!(
                "signed; the signatures suffice: version {version} adopted here (a running node takes it up within a second); the other members take it up by themselves within a minute"
            );
        }
        Err(missing) => {
            println!("signed by this node into {}; {missing}", path.display());
        }
    }
    Ok(())
}

/// `roster status`: the roster held, or where a proposal stands.
fn roster_status(config: &Config, proposal: Option<&Path>) -> Result<(), Failure> {
    let held = &config.roster;
    match proposal {
        Some(path) => {
            let signed = quorum::SignedRoster::load(path).context("cannot read the proposal")?;
            let tally = quorum::tally(held, &signed, schein_proto::Day::today())
                .context("the proposal does not follow the roster held")?;
            print!("{}", quorum::describe(held, &tally));
            match tally.complete(held) {
                Ok(()) => {
                    println!("complete: `schein-node roster sign` or `roster adopt` adopts it")
                }
                Err(missing) => println!("incomplete: {missing}"),
            }
        }
        None => {
            println!(
                "roster version {}, threshold {} of {} member nodes",
                held.version(),
                held.threshold(),
                held.node_count()
            );
            if held.version() == 0 {
                println!(
                    "version 0: assembled by hand; the members sign from version 1 on (`roster propose`)"
                );
            }
            for member in held.members() {
                println!(
                    "  {:<12} {:<20} {}",
                    member.id(),
                    member.name(),
                    member.fingerprint()
                );
                for key in &member.signing_keys {
                    let until = key.valid_until.map_or("open".into(), |d| d.to_string());
                    let compromised = key
                        .compromised_from
                        .map(|d| format!(", COMPROMISED after {d}"))
                        .unwrap_or_default();
                    println!(
                        "  {:<12} key {} signs {} to {until}{compromised}",
                        "", key.key_id.0, key.valid_from
                    );
                }
            }
        }
    }
    Ok(())
}

/// `roster adopt`: a version signed by enough members, or a joining city's first roster.
fn adopt_version(config: &Config, path: &Path, first: bool, yes: bool) -> Result<(), Failure> {
    let signed = quorum::SignedRoster::load(path).context("cannot read the roster version")?;
    let today = schein_proto::Day::today();
    let held = &config.roster;
    let roster = if first {
        if held.version() > 0 || held.members().count() > 1 {
            return Err(anyhow::anyhow!(
                "--first is for a city that holds no roster but its own; this node holds version {} with {} members",
                held.version(),
                held.members().count()
            )
            .into());
        }
        let own = held
            .member(config.node_id())
            .map(|m| m.entry.clone())
            .context("this node is not in its own roster")?;
        let roster = quorum::check_first(&own, &signed, today).context("not adopted")?;
        println!(
            "version {} names this node; it is taken on trust, so compare every fingerprint with its operator by phone:",
            roster.version()
        );
        for member in roster.members() {
            println!("  {:<12} {}", member.id(), member.fingerprint());
        }
        confirm(yes, "Install this roster?")?;
        roster
    } else {
        quorum::check_next(held, &signed, today).context("not adopted")?
    };
    quorum::History::beside(&config.roster_path)
        .adopt(held.version(), &signed, &config.roster_path)
        .context("cannot adopt the version")?;
    println!(
        "roster version {} adopted: {} members; a running node takes it up within a second",
        roster.version(),
        roster.members().count()
    );
    for member in roster.members() {
        println!("  {:<12} {}", member.id(), member.fingerprint());
    }
    Ok(())
}

/// `key rotate`: a new signing key, listed by a version that the current key signs.
fn rotate_key(config_path: &Path, from: Option<&str>) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let today = schein_proto::Day::today();
    let from = match from {
        Some(text) => schein_proto::Day::parse(text).map_err(|e| anyhow::anyhow!("--from: {e}"))?,
        None => today,
    };
    if from < today {
        return Err(
            anyhow::anyhow!("--from {from} lies in the past: a key never signs backwards").into(),
        );
    }
    let held = &config.roster;
    let mut entry = held
        .member(config.node_id())
        .context("this node is not in its own roster")?
        .entry
        .clone();
    if let Some(pending) = entry
        .signing_keys
        .iter()
        .find(|k| schein_proto::Day::parse(&k.valid_from).is_ok_and(|d| d > today))
    {
        return Err(anyhow::anyhow!(
            "key {} begins on {} already: one rotation at a time",
            pending.key_id,
            pending.valid_from
        )
        .into());
    }
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    for old in &mut entry.signing_keys {
        if old.valid_until.is_none() && old.compromised_from.is_none() {
            old.valid_until = Some(from.to_string());
        }
    }
    entry
        .signing_keys
        .push(schein_node::roster::SigningKeyEntry::new(
            &key.verifying_key(),
            from,
        ));
    let (_, signed) = own_proposal(&config, entry, today).context("cannot list the new key")?;
    quorum::check_next(held, &signed, today).context("the rotation does not check")?;
    let key_path = schein_node::config::rotated_key_path(&config.key_dir, &key);
    schein_node::files::write_atomically(
        &key_path,
        schein_node::config::signing_key_file(&key).as_bytes(),
        true,
    )
    .context("cannot write the new key")?;
    let version = quorum::History::beside(&config.roster_path)
        .adopt(held.version(), &signed, &config.roster_path)
        .context("cannot adopt the version")?;
    let new_id = schein_proto::KeyId::of(&key.verifying_key()).0;
    println!("new signing key {new_id} written to {}", key_path.display());
    println!(
        "it signs vouchers from {from}; the previous key stops after {from}, and what it signed stays valid"
    );
    println!(
        "roster version {version} lists it, signed by this node's current key; a running node takes it up within a second, the other members within a minute"
    );
    println!("back up the new key file offline now, as the first one");
    Ok(())
}

/// The files a CA rotation replaces: their names in `keys/next/`, and where the configuration
/// keeps them.
fn ca_files(config: &Config) -> [(&'static str, PathBuf); 4] {
    let at = |p: &Path| config.base_dir.join(p);
    let s = &config.settings;
    [
        ("ca.pem", at(&s.ca_cert)),
        ("ca.key", at(&s.ca_key)),
        ("node.pem", at(&s.tls_cert)),
        ("node.key", at(&s.tls_key)),
    ]
}

/// `ca rotate`: a new CA and node certificate waiting in keys/next/, and the proposal.
fn rotate_ca(config_path: &Path, overlap_days: u16, out: Option<PathBuf>) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let next_dir = config.key_dir.join("next");
    if next_dir.exists() {
        return Err(anyhow::anyhow!(
            "{} exists: a CA rotation waits already (`schein-node ca activate` once adopted, or remove the directory to start again)",
            next_dir.display()
        )
        .into());
    }
    let today = schein_proto::Day::today();
    let last_day = today
        .checked_add_days(i32::from(overlap_days))
        .context("--overlap-days is too large")?;
    let held = &config.roster;
    let mut entry = held
        .member(config.node_id())
        .context("this node is not in its own roster")?
        .entry
        .clone();
    let (ca, ca_pem) =
        schein_node::pki::NodeCa::generate(config.node_id()).context("cannot make a CA")?;
    let hostnames = schein_node::pki::dns_names_of_pem(&config.tls.cert_pem)
        .into_iter()
        .filter(|h| h != config.node_id())
        .collect::<Vec<_>>();
    let node_cert = ca
        .issue_node_cert(
            &hostnames,
            schein_node::pki::Validity::days_from_now(5 * 365),
        )
        .context("cannot make the node certificate")?;
    entry.previous_cas.push(schein_node::roster::PreviousCa {
        ca_cert: entry.ca_cert.clone(),
        valid_until: last_day.to_string(),
    });
    entry.ca_cert = ca_pem.cert_pem.clone();
    let (next, signed) =
        own_proposal(&config, entry, today).context("cannot propose the new CA")?;
    for (name, text, private) in [
        ("ca.pem", &ca_pem.cert_pem, false),
        ("ca.key", &ca_pem.key_pem, true),
        ("node.pem", &node_cert.cert_pem, false),
        ("node.key", &node_cert.key_pem, true),
    ] {
        schein_node::files::write_atomically(&next_dir.join(name), text.as_bytes(), private)
            .with_context(|| format!("cannot write keys/next/{name}"))?;
    }
    // The identity files kept here trust both CAs from now on, so that they reach the node
    // before and after `ca activate`.
    let bundle = schein_node::pki::node_ca_bundle(
        &config.ca_cert_pem,
        held,
        config.node_id(),
        &config.key_dir,
    );
    let mut updated = 0;
    if let Ok(entries) = std::fs::read_dir(config.base_dir.join("identities")) {
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            if path.extension().is_some_and(|e| e == "toml")
                && let Ok(mut identity) = IdentityFile::load(&path)
            {
                identity.node_ca = bundle.clone();
                identity
                    .replace(&path)
                    .with_context(|| format!("cannot update {}", path.display()))?;
                updated += 1;
            }
        }
    }
    let out = proposal_path(&config, next.version(), out);
    signed.save(&out).context("cannot write the proposal")?;
    let tally = quorum::tally(held, &signed, today).context("the proposal does not check")?;
    print!("{}", quorum::describe(held, &tally));
    println!(
        "new CA and node certificate written to {}",
        next_dir.display()
    );
    println!(
        "{updated} identity files in identities/ now trust both CAs; holders elsewhere renew (`schein identity renew`) before `ca activate` to trust both"
    );
    println!(
        "proposal written to {}: the members co-sign it (`schein-node roster sign FILE`); once adopted, run `schein-node ca activate` and restart the node",
        out.display()
    );
    println!(
        "certificates of the current CA are taken until {last_day}: renew every identity before then"
    );
    Ok(())
}

/// `ca activate`: the CA from keys/next/ in place, once the roster lists it.
fn activate_ca(config_path: &Path) -> Result<(), Failure> {
    let config = load_config(config_path)?;
    let next_dir = config.key_dir.join("next");
    let next_ca = std::fs::read_to_string(next_dir.join("ca.pem"))
        .with_context(|| format!("no CA waits in {}", next_dir.display()))?;
    let listed = config
        .roster
        .member(config.node_id())
        .is_some_and(|me| me.entry.ca_cert.trim() == next_ca.trim());
    if !listed {
        return Err(anyhow::anyhow!(
            "the roster in force does not list the new CA yet: wait until the members adopted the version (`schein-node roster status`)"
        )
        .into());
    }
    let old_dir = config
        .key_dir
        .join(format!("old-{}", schein_proto::Day::today()));
    std::fs::create_dir_all(&old_dir).context("cannot keep the old CA")?;
    for (name, path) in ca_files(&config) {
        std::fs::rename(&path, old_dir.join(name))
            .with_context(|| format!("cannot move {} aside", path.display()))?;
        std::fs::rename(next_dir.join(name), &path)
            .with_context(|| format!("cannot put keys/next/{name} in place"))?;
    }
    std::fs::remove_dir(&next_dir).context("cannot remove keys/next")?;
    println!(
        "the new CA is in place (the old one kept in {}); restart the node (systemctl restart schein-node)",
        old_dir.display()
    );
    println!(
        "identities of the old CA work until its last day; their holders renew with `schein identity renew`, or enrol them again"
    );
    Ok(())
}

/// `identity export`: an existing identity as a .p12 file, under the password from the file or
/// the environment, else a generated one.
fn export_identity(
    identity: &Path,
    out: Option<PathBuf>,
    password_file: Option<&Path>,
) -> Result<(), Failure> {
    let out = out.unwrap_or_else(|| identity.with_extension("p12"));
    if out == identity {
        return Err(anyhow::anyhow!(
            "the .p12 file would replace the identity file; name it with --out"
        )
        .into());
    }
    let loaded = IdentityFile::load(identity).context("cannot export the identity")?;
    let (password, generated) = match (password_file, std::env::var_os(P12_PASSWORD_ENV)) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the password file {}", path.display()))?;
            (text.lines().next().unwrap_or_default().to_owned(), None)
        }
        (None, Some(value)) => {
            let value = value
                .into_string()
                .map_err(|_| anyhow::anyhow!("{P12_PASSWORD_ENV} is not valid UTF-8"))?;
            (value, None)
        }
        (None, None) => {
            let password = Password::generate();
            (password.as_str().to_owned(), Some(password))
        }
    };
    schein_node::p12::write_new(&loaded, &password, &out).context("cannot export the identity")?;
    println!(
        "{} identity '{}' of node {} written to {}; hand it over privately, it holds a private key",
        loaded.role,
        loaded.name,
        loaded.node,
        out.display()
    );
    match generated {
        Some(password) => print_password(&out, &password),
        None => println!("protected with the password you gave"),
    }
    Ok(())
}

/// Shows a generated .p12 password, the only time anyone sees it.
fn print_password(p12_path: &Path, password: &Password) {
    println!("password of the .p12 file: {}", password.as_str());
    println!(
        "to import it, double-click {} and enter this password (hyphens included); it is shown only now and stored nowhere",
        p12_path.display()
    );
}

/// A member's fee schedule for people: euros, not cents, and each catalogue's factor applied.
fn fee_table(member: &schein_node::roster::Member) -> String {
    fn euros(cents: i64) -> String {
        format!("{}.{:02}", cents / 100, cents % 100)
    }
    let schedule = member.fee_schedule();
    let mut table = format!(
        "Fee schedule of {} ({}): the most it pays for one unit of each fee code, in euros.\n\
         A bill line `--item CODE:COUNT:EUROS` gives the whole line: at most COUNT times the unit.\n",
        member.name(),
        member.id()
    );
    for catalogue in &schedule.catalogues {
        let factor = catalogue.factor_percent;
        let factor = if factor % 10 == 0 {
            format!("{}.{}", factor / 100, factor % 100 / 10)
        } else {
            format!("{}.{:02}", factor / 100, factor % 100)
        };
        let category = match catalogue.category {
            CatalogueCategory::Treatment => "treatment",
            CatalogueCategory::Medication => "medication",
        };
        table.push_str(&format!(
            "\n{}: {category}, factor {factor}\n  {:<12} {:>10} {:>10}\n",
            catalogue.name, "fee code", "base", "per unit"
        ));
        for (code, &base) in &catalogue.items {
            // What the redeeming node checks a bill line against, from the same function.
            let unit = schedule.max_unit_cents(code).map_or(base, |(unit, _)| unit);
            table.push_str(&format!(
                "  {code:<12} {:>10} {:>10}\n",
                euros(base),
                euros(unit)
            ));
        }
    }
    table
}

/// Runs the node until a signal, reloading the roster on SIGHUP.
async fn serve(config: Config) -> anyhow::Result<()> {
    // Colour codes only on a terminal: in a journal or a file they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let filter = tracing_subscriber::EnvFilter::try_new(&config.settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if config.settings.log_format == "json" {
        // One JSON object per line, fields at the top level, for log collectors.
        logs.json().flatten_event(true).with_ansi(false).init();
    } else {
        logs.with_ansi(ansi).init();
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let roster_path = config.roster_path.clone();
    let node_id = config.node_id().to_owned();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let server = tokio::spawn(run(
        config,
        listener,
        async move {
            let _ = stop_rx.await;
        },
        Some(ready_tx),
    ));
    let Ok(control) = ready_rx.await else {
        // The node failed before it served; its task holds the reason.
        return match server.await {
            Ok(Err(error)) => Err(anyhow::Error::new(error).context("the node could not start")),
            Ok(Ok(())) => Err(anyhow::anyhow!("the node stopped before it served")),
            Err(join) => Err(anyhow::anyhow!("the node task failed: {join}")),
        };
    };
    let mut server = server;
    tokio::select! {
        () = wait_for_signals(Some(control), &roster_path, &node_id) => {}
        finished = &mut server => {
            // The server ended without being asked to: report why.
            return match finished {
                Ok(result) => result.context("the node stopped"),
                Err(join) => Err(anyhow::anyhow!("the node task failed: {join}")),
            };
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(15), server).await {
        Ok(Ok(result)) => result.context("the node failed"),
        Ok(Err(join)) => Err(anyhow::anyhow!("the node task failed: {join}")),
        Err(_) => {
            tracing::warn!("connections did not drain within 15 s; stopping anyway");
            Ok(())
        }
    }
}

#[cfg(unix)]
async fn wait_for_signals(
    control: Option<schein_node::server::Control>,
    roster_path: &Path,
    node_id: &str,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => reload_roster(control.as_ref(), roster_path, node_id),
        }
    }
    tracing::info!("signal received, shutting down");
}

#[cfg(not(unix))]
async fn wait_for_signals(
    _control: Option<schein_node::server::Control>,
    _roster_path: &Path,
    _node_id: &str,
) {
    let _ = tokio::signal::ctrl_c().await;
}

fn reload_roster(control: Option<&schein_node::server::Control>, path: &Path, node_id: &str) {
    let Some(control) = control else { return };
    match Roster::load(path) {
        Ok(roster) if roster.version() < control.roster_version() => tracing::error!(
            file = roster.version(),
            held = control.roster_version(),
            "roster not reloaded: the file holds an older version than the node"
        ),
        Ok(roster) if roster.member(node_id).is_some() => match control.replace_roster(roster) {
            Ok(()) => tracing::info!("roster reloaded"),
            Err(error) => tracing::error!(%error, "roster not reloaded"),
        },
        Ok(_) => tracing::error!("roster not reloaded: it does not list this node"),
        Err(error) => tracing::error!(%error, "roster not reloaded"),
    }
}
