//! The `schein` binary against a real local federation, for what use in the offices and
//! practices found: output into a closed pipe, exit codes of claims, the node named when
//! another one is down, emergency vouchers, and the README's examples as written.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use schein_node::local::{LocalFederation, SAXONY};
use schein_node::pki::Role;

/// Runs `schein` as `identity` with standard output going to `stdout`.
async fn schein_to(identity: &Path, args: &[&str], stdout: Stdio) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_schein"))
        .env_remove("SCHEIN_IDENTITY")
        .env_remove("SCHEIN_ENDPOINT")
        .arg("--identity")
        .arg(identity)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schein")
        .wait_with_output()
        .await
        .expect("run schein")
}

async fn schein(identity: &Path, args: &[&str]) -> Output {
    schein_to(identity, args, Stdio::piped()).await
}

/// A pipe whose reader is gone, as after `| head -1` has read its line.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer.into()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(output), stderr(output)))
}

/// Leipzig, Dresden and Chemnitz, with Leipzig's office and a Dresden practice.
struct Saxony {
    federation: LocalFederation,
    _dir: tempfile::TempDir,
    office: PathBuf,
    practice: PathBuf,
}

impl Saxony {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let federation = LocalFederation::start(dir.path(), &SAXONY)
            .await
            .expect("start the federation");
        federation
            .enroll("dresden", Role::Provider, "praxis")
            .expect("enroll");
        Self {
            office: dir.path().join("leipzig/identities/office-office.toml"),
            practice: dir.path().join("dresden/identities/provider-praxis.toml"),
            federation,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn a_closed_pipe_ends_quietly_with_the_commands_exit_code() {
    let saxony = Saxony::start().await;

    // The voucher is issued although nobody reads its codes: exit 0, so no script retries.
    let issued = schein_to(&saxony.office, &["voucher", "issue"], closed_pipe()).await;
    assert_eq!(issued.status.code(), Some(0), "{}", stderr(&issued));
    assert_eq!(stderr(&issued), "", "a closed pipe ends quietly");
    let listed = json(&schein(&saxony.office, &["--json", "voucher", "list"]).await);
    assert_eq!(listed["vouchers"].as_array().map(Vec::len), Some(1));

    let list = schein_to(&saxony.office, &["voucher", "list"], closed_pipe()).await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    assert_eq!(stderr(&list), "");

    // A verdict keeps its exit code too.
    let short = listed["vouchers"][0]["short_code"]
        .as_str()
        .expect("short code")
        .to_owned();
    let mut typo: Vec<char> = short.chars().collect();
    typo[6] = if typo[6] == '7' { '8' } else { '7' };
    let typo: String = typo.into_iter().collect();
    let verify = schein_to(
        &saxony.practice,
        &["voucher", "verify", &typo],
        closed_pipe(),
    )
    .await;
    assert_eq!(verify.status.code(), Some(3), "{}", stderr(&verify));
    assert_eq!(stderr(&verify), "");

    // Any other failure to write is not swallowed.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let disk_full = schein_to(&saxony.office, &["voucher", "list"], full.into()).await;
    assert_eq!(disk_full.status.code(), Some(1));
    assert!(
        stderr(&disk_full).contains("could not be written to standard output"),
        "{}",
        stderr(&disk_full)
    );
    saxony.federation.shutdown().await.expect("shutdown");
}
