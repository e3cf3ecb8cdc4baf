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
    dir: tempfile::TempDir,
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
            dir,
        }
    }

    fn enroll(&self, node: &str, role: Role, name: &str) -> PathBuf {
        self.federation.enroll(node, role, name).expect("enroll");
        self.dir
            .path()
            .join(format!("{node}/identities/{role}-{name}.toml"))
    }

    /// Issues a voucher at Leipzig and returns its JSON record.
    async fn issue(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json", "voucher", "issue"];
        all.extend_from_slice(args);
        let issued = schein(&self.office, &all).await;
        assert_eq!(issued.status.code(), Some(0), "{}", stderr(&issued));
        json(&issued)
    }
}

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

/// `claim submit` of `items` on `code` today, under `id`.
fn claim<'a>(code: &'a str, date: &'a str, id: &'a str, items: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "claim",
        "submit",
        "--voucher",
        code,
        "--date",
        date,
        "--kind",
        "practice",
        "--id",
        id,
    ];
    for item in items {
        args.extend(["--item", item]);
    }
    args
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

#[tokio::test]
async fn claims_exit_with_their_state() {
    let mut saxony = Saxony::start().await;
    let practice = saxony.practice.clone();
    let today = today();

    // Over the cap: rejected, exit 5, and its status says so again.
    let small = saxony.issue(&["--cap", "5"]).await;
    let small = small["short_code"].as_str().expect("short code");
    let over = claim(small, &today, "over", &["GOAE-1:1:4.66", "GOAE-5:1:4.66"]);
    let over = schein(&practice, &over).await;
    assert_eq!(
        over.status.code(),
        Some(5),
        "{}{}",
        stdout(&over),
        stderr(&over)
    );
    assert!(stdout(&over).contains("rejected"), "{}", stdout(&over));
    let status = schein(&practice, &["claim", "status", "over"]).await;
    assert_eq!(status.status.code(), Some(5), "{}", stderr(&status));

    // Settled: 0. The same service again under another id: held, 7.
    let voucher = saxony.issue(&[]).await;
    let code = voucher["short_code"].as_str().expect("short code");
    let first = schein(&practice, &claim(code, &today, "first", &["GOAE-1:1:4.66"])).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    for id in ["again", "twice"] {
        let held = schein(&practice, &claim(code, &today, id, &["GOAE-1:1:4.66"])).await;
        assert_eq!(
            held.status.code(),
            Some(7),
            "{}{}",
            stdout(&held),
            stderr(&held)
        );
    }
    let status = schein(&practice, &["claim", "status", "again"]).await;
    assert_eq!(status.status.code(), Some(7));
    // The practice's own office, in Dresden, releases one (settled: 0) and rejects the other
    // (done as asked: 0); the practice then sees it rejected (5).
    let office = saxony
        .dir
        .path()
        .join("dresden/identities/office-office.toml");
    let released = schein(&office, &["claim", "release", "praxis", "again"]).await;
    assert_eq!(released.status.code(), Some(0), "{}", stderr(&released));
    let rejected = schein(&office, &["claim", "reject", "praxis", "twice"]).await;
    assert_eq!(rejected.status.code(), Some(0), "{}", stderr(&rejected));
    let status = schein(&practice, &["claim", "status", "twice"]).await;
    assert_eq!(status.status.code(), Some(5));
    let listed = schein(&practice, &["claim", "list"]).await;
    assert_eq!(
        listed.status.code(),
        Some(0),
        "a list has no state of its own"
    );

    // Leipzig down: the claim on the full code waits in Dresden's outbox, 6.
    let later = saxony.issue(&[]).await;
    let full = later["full_code"].as_str().expect("full code");
    saxony.federation.stop("leipzig").await.expect("stop");
    let pending = schein(&practice, &claim(full, &today, "later", &["GOAE-1:1:4.66"])).await;
    assert_eq!(
        pending.status.code(),
        Some(6),
        "{}{}",
        stdout(&pending),
        stderr(&pending)
    );
    let status = schein(&practice, &["claim", "status", "later"]).await;
    assert_eq!(status.status.code(), Some(6));
    saxony.federation.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_claim_by_short_code_names_the_issuer_that_is_down() {
    let mut saxony = Saxony::start().await;
    let voucher = saxony.issue(&[]).await;
    let code = voucher["short_code"].as_str().expect("short code");
    saxony.federation.stop("leipzig").await.expect("stop");
    let dresden = saxony
        .federation
        .node("dresden")
        .expect("dresden")
        .config()
        .expect("config")
        .settings
        .endpoint
        .clone();
    let refused = schein(
        &saxony.practice,
        &claim(code, &today(), "down", &["GOAE-1:1:4.66"]),
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("issuing office (Leipzig) could not be reached"),
        "{said}"
    );
    assert!(
        !said.contains("cannot reach the node") && !said.contains(&dresden),
        "Dresden answered; it is not the node that is down: {said}"
    );
    saxony.federation.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_emergency_voucher_says_so_and_to_whom_it_is_bound() {
    let saxony = Saxony::start().await;
    let hospital = saxony.enroll("leipzig", Role::Provider, "klinikum");
    let bound = "leipzig/klinikum";

    let issued = schein(
        &saxony.office,
        &["voucher", "issue", "--emergency", "--for-provider", bound],
    )
    .await;
    assert_eq!(issued.status.code(), Some(0), "{}", stderr(&issued));
    let text = stdout(&issued);
    assert!(text.starts_with("Emergency voucher issued."), "{text}");
    assert!(
        text.contains("emergency voucher, bound to leipzig/klinikum"),
        "{text}"
    );
    let short = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("short code"))
        .expect("short code")
        .trim()
        .to_owned();

    let shown = json(&schein(&saxony.office, &["--json", "voucher", "show", &short]).await);
    assert_eq!(shown["emergency"], true, "{shown}");
    assert_eq!(shown["bound_provider"], bound);
    let shown = stdout(&schein(&saxony.office, &["voucher", "show", &short]).await);
    assert!(shown.contains("bound to leipzig/klinikum"), "{shown}");
    let listed = stdout(&schein(&saxony.office, &["voucher", "list"]).await);
    let line = listed
        .lines()
        .find(|l| l.starts_with(&short))
        .expect("listed");
    assert!(
        line.contains("emergency voucher, bound to leipzig/klinikum"),
        "{listed}"
    );
    let listed = json(&schein(&saxony.office, &["--json", "voucher", "list"]).await);
    assert_eq!(listed["vouchers"][0]["bound_provider"], bound);

    // The hospital it is bound to sees that, in text and JSON. (What any other provider is
    // told, INVALID "bound elsewhere", is the node's verdict; output.rs tests how it prints.)
    let verified = schein(&hospital, &["voucher", "verify", &short]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
    assert!(
        stdout(&verified).contains("emergency voucher, bound to leipzig/klinikum"),
        "{}",
        stdout(&verified)
    );
    let verified = json(&schein(&hospital, &["--json", "voucher", "verify", &short]).await);
    assert_eq!(verified["voucher"]["emergency"], true, "{verified}");
    assert_eq!(verified["voucher"]["bound_provider"], bound);
    saxony.federation.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn emergency_and_for_provider_go_together_or_not_at_all() {
    // An identity that could never connect: the refusal comes before any call to a node.
    let dir = tempfile::tempdir().expect("temporary directory");
    let nobody = dir.path().join("identity.toml");
    std::fs::write(&nobody, "not an identity").expect("write");
    for args in [
        &["voucher", "issue", "--for-provider", "dresden/praxis"][..],
        &["voucher", "issue", "--emergency"][..],
        &[
            "voucher",
            "issue",
            "--emergency",
            "--for-provider",
            "klinikum",
        ][..],
    ] {
        let refused = schein(&nobody, args).await;
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&refused)
        );
        assert!(
            !stderr(&refused).contains("identity"),
            "{args:?}: refused before reading the identity: {}",
            stderr(&refused)
        );
    }
}

/// The README's claim example as written (continuation lines joined, comment dropped), without
/// the leading `schein`.
fn readme_example(starting: &str) -> Vec<String> {
    let readme = include_str!("../../README.md").replace("\\\n", " ");
    let line = readme
        .lines()
        .find(|l| l.starts_with(starting))
        .unwrap_or_else(|| panic!("the README has no example starting {starting:?}"));
    let command = line.split('#').next().unwrap_or_default();
    command
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_readmes_claim_example_runs_on_a_voucher_issued_today() {
    let saxony = Saxony::start().await;
    let voucher = saxony.issue(&[]).await;
    let code = voucher["short_code"].as_str().expect("short code");
    let example = readme_example("schein claim submit");
    let args: Vec<&str> = example
        .iter()
        .map(|a| {
            if a == "LEJ-7KQ4-M2XD-9FTR-WB3H-Q" {
                code
            } else {
                a.as_str()
            }
        })
        .collect();
    assert!(args.contains(&code), "{example:?}");
    let submitted = schein(&saxony.practice, &args).await;
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{args:?}: {}{}",
        stdout(&submitted),
        stderr(&submitted)
    );
    assert!(
        stdout(&submitted).contains("settled"),
        "{}",
        stdout(&submitted)
    );
    let status = readme_example("schein claim status");
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    let answer = schein(&saxony.practice, &status).await;
    assert_eq!(answer.status.code(), Some(0), "{}", stderr(&answer));

    // A role refused in words one can read aloud.
    let office = schein(&saxony.office, &["voucher", "verify", code]).await;
    assert_eq!(office.status.code(), Some(1));
    assert!(
        stderr(&office).contains("an office certificate cannot"),
        "{}",
        stderr(&office)
    );
    saxony.federation.shutdown().await.expect("shutdown");
}

/// The value of `key=` in the systemd unit.
fn unit_setting<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

#[test]
fn the_install_instructions_put_the_node_where_the_unit_runs_it() {
    let unit = include_str!("../../deploy/schein-node.service");
    let readme = include_str!("../../README.md");
    let start = readme.find("## Running a real node").expect("section");
    let end = readme.find("## Using schein, by task").expect("section");
    let section = &readme[start..end];

    let exec = unit_setting(unit, "ExecStart");
    let binary = Path::new(exec.split_whitespace().next().expect("ExecStart binary"));
    let bin_dir = binary
        .parent()
        .expect("a directory")
        .to_str()
        .expect("utf-8");
    let installs = section
        .lines()
        .find(|l| l.contains("install") && l.contains("schein-node") && !l.contains("service"))
        .expect("the README installs schein-node");
    let target = installs.split_whitespace().last().expect("a target");
    assert_eq!(
        target.trim_end_matches('/'),
        bin_dir,
        "README installs to {target}, the unit runs {exec}"
    );
    let documentation = unit_setting(unit, "Documentation");
    let doc = documentation.trim_start_matches("file://");
    assert!(section.contains(doc), "the README installs {doc}");

    let config = exec
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .expect("ExecStart names its configuration");
    assert!(
        section.contains(&format!("schein-node --config {config} run")),
        "the README runs the node with the unit's configuration {config}"
    );
    let dir = unit_setting(unit, "WorkingDirectory");
    assert_eq!(Path::new(config).parent(), Some(Path::new(dir)));
    assert!(
        section.contains(&format!("init --dir {dir} ")),
        "README: init in {dir}"
    );
    let user = unit_setting(unit, "User");
    assert!(
        section.contains(&format!("useradd --system --create-home --home-dir {dir}"))
            && section.contains(&format!("sudo -u {user} ")),
        "the README creates and uses the user {user}"
    );
}

/// The value of `INSTRUCTION` in the container file (the first such line).
fn containerfile_setting<'a>(containerfile: &'a str, instruction: &str) -> &'a str {
    containerfile
        .lines()
        .find_map(|l| l.strip_prefix(instruction)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("the container file has no {instruction}"))
        .trim()
}

#[test]
fn the_container_the_units_and_the_readme_agree_on_paths() {
    let containerfile = include_str!("../../deploy/Containerfile");
    let unit = include_str!("../../deploy/schein-node.service");
    let backup = include_str!("../../deploy/schein-backup.service");
    let timer = include_str!("../../deploy/schein-backup.timer");
    let readme = include_str!("../../README.md");
    let dockerignore = include_str!("../../.dockerignore");

    let exec = unit_setting(unit, "ExecStart");
    let binary = exec.split_whitespace().next().expect("ExecStart binary");
    let config = exec
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .expect("ExecStart names its configuration");
    let dir = unit_setting(unit, "WorkingDirectory");
    let user = unit_setting(unit, "User");

    // The image: built in one stage, run from another, as a numeric user other than root, with
    // the node's directory of the unit as its volume and the unit's configuration.
    let stages: Vec<&str> = containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a build and a runtime stage: {stages:?}");
    assert!(stages[0].contains("rust") && stages[0].ends_with(" AS build"));
    assert!(
        !stages[1].contains("rust"),
        "the runtime is slim: {}",
        stages[1]
    );
    assert!(
        containerfile.contains("cargo build --release --locked -p schein-node -p schein-cli"),
        "the image builds both binaries from the lock file"
    );
    let runtime = &containerfile[containerfile.rfind("\nFROM ").expect("a runtime stage")..];
    let (uid, gid) = containerfile_setting(runtime, "USER")
        .split_once(':')
        .expect("USER uid:gid");
    for id in [uid, gid] {
        let id: u32 = id.parse().expect("a numeric user and group");
        assert_ne!(id, 0, "the image does not run as root");
    }
    assert_eq!(containerfile_setting(runtime, "WORKDIR"), dir);
    assert_eq!(
        containerfile_setting(runtime, "VOLUME"),
        format!("[\"{dir}\"]")
    );
    assert_eq!(
        containerfile_setting(runtime, "ENV"),
        format!("SCHEIN_NODE_CONFIG={config}")
    );
    assert_eq!(
        containerfile_setting(runtime, "ENTRYPOINT"),
        format!("[\"{binary}\"]")
    );
    assert_eq!(containerfile_setting(runtime, "CMD"), "[\"run\"]");
    assert!(
        dockerignore.lines().any(|l| l.trim() == "target"),
        "target/ stays out of the build context"
    );

    // Backups: the timer's service runs the unit's binary on the unit's configuration as the
    // unit's user, into a directory the running node may write (it writes the file itself),
    // which the image and the README's install steps create.
    let backup_exec = unit_setting(backup, "ExecStart");
    let backup_dir = "/var/backups/schein";
    assert!(
        backup_exec.contains(&format!(
            "{binary} --config {config} backup \"{backup_dir}/"
        )),
        "{backup_exec}"
    );
    assert_eq!(unit_setting(backup, "User"), user);
    assert_eq!(unit_setting(backup, "WorkingDirectory"), dir);
    let writable: Vec<&str> = unit_setting(unit, "ReadWritePaths")
        .split_whitespace()
        .map(|p| p.trim_start_matches('-'))
        .collect();
    assert!(
        writable.contains(&dir) && writable.contains(&backup_dir),
        "{writable:?}"
    );
    let backup_writable = unit_setting(backup, "ReadWritePaths");
    assert!(backup_writable.contains(dir) && backup_writable.contains(backup_dir));
    assert!(runtime.contains(&format!("{dir} {backup_dir}")));
    assert!(timer.contains("Persistent=true"));
    let start = readme.find("## Running a real node").expect("section");
    let end = readme.find("## Using schein, by task").expect("section");
    let section = &readme[start..end];
    assert!(
        section.contains(&format!(
            "install -d -m 0700 -o {user} -g {user} {backup_dir}"
        )),
        "the README makes {backup_dir}"
    );
    assert!(section.contains("deploy/schein-backup.timer"));
    assert!(section.contains(&format!("-v schein-leipzig:{dir} ")));
}
