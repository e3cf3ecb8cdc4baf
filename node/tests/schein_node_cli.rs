//! The `schein-node` binary as an operator uses it: init, check, enroll, roster, identities as
//! .p12 files for browsers, and refusals of broken configuration with exit code 64 before
//! anything is bound.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `schein-node` and collects its output; a command that has not finished within 30 s
/// (a `run` that started serving although it should have refused) is killed and fails.
fn schein_node(dir: &Path, args: &[&str]) -> Output {
    schein_node_with_env(dir, args, &[])
}

fn schein_node_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_schein-node"))
        .current_dir(dir)
        .env_remove("SCHEIN_NODE_CONFIG")
        .env_remove("SCHEIN_P12_PASSWORD")
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run schein-node");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("schein-node {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn init(dir: &Path, id: &str, prefix: &str, port: u16) -> Output {
    schein_node(
        dir,
        &[
            "init",
            "--dir",
            id,
            "--id",
            id,
            "--name",
            id,
            "--prefix",
            prefix,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--endpoint",
            &format!("https://127.0.0.1:{port}"),
        ],
    )
}

#[test]
fn two_operators_set_up_nodes_and_exchange_member_entries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let created = init(root, "leipzig", "LEJ", 17443);
    assert!(created.status.success(), "{}", text(&created));
    assert!(text(&created).contains("member entry"));
    assert!(init(root, "dresden", "DRS", 17444).status.success());

    let again = init(root, "leipzig", "LEJ", 17443);
    assert!(!again.status.success(), "init never overwrites a node");

    let leipzig = root.join("leipzig");
    let check = schein_node(&leipzig, &["check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("1 members"));

    let add = schein_node(&leipzig, &["roster", "add", "../dresden/member.toml"]);
    assert!(add.status.success(), "{}", text(&add));
    let list = schein_node(&leipzig, &["roster", "list"]);
    assert!(
        text(&list).contains("dresden") && text(&list).contains("DRS"),
        "{}",
        text(&list)
    );
    let own = schein_node(&leipzig, &["roster", "add", "member.toml"]);
    assert!(!own.status.success());

    let enroll = schein_node(
        &leipzig,
        &["enroll", "--role", "provider", "--name", "praxis-nord"],
    );
    assert!(enroll.status.success(), "{}", text(&enroll));
    let identity =
        std::fs::read_to_string(leipzig.join("identities/provider-praxis-nord.toml")).unwrap();
    assert!(identity.contains("role = \"provider\""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(leipzig.join("identities/provider-praxis-nord.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "identity files are private");
    }
    let twice = schein_node(
        &leipzig,
        &["enroll", "--role", "provider", "--name", "praxis-nord"],
    );
    assert!(!twice.status.success(), "enroll never overwrites");
    let bad_role = schein_node(&leipzig, &["enroll", "--role", "janitor", "--name", "x"]);
    assert!(!bad_role.status.success());
    let bad_name = schein_node(
        &leipzig,
        &["enroll", "--role", "office", "--name", "Anna Müller"],
    );
    assert!(!bad_name.status.success());
    assert!(
        text(&bad_name).contains("not a valid name"),
        "{}",
        text(&bad_name)
    );

    let member = schein_node(&leipzig, &["member"]);
    assert!(text(&member).contains("id = \"leipzig\""));

    let removed = schein_node(&leipzig, &["roster", "remove", "dresden"]);
    assert!(removed.status.success());
    assert!(!text(&schein_node(&leipzig, &["roster", "list"])).contains("dresden"));
}

#[test]
fn broken_configuration_is_refused_with_exit_code_64() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), "chemnitz", "CHE", 17445).status.success());
    let node = dir.path().join("chemnitz");
    let config = node.join("schein-node.toml");
    let original = std::fs::read_to_string(&config).unwrap();

    let cases: [(&str, String); 6] = [
        ("unknown field", format!("{original}\nlisten_port = 5\n")),
        ("not toml", "node_id = \"chemnitz\n".to_owned()),
        (
            "bad listen",
            original.replace("listen = \"127.0.0.1:17445\"", "listen = \"here\""),
        ),
        (
            "bad prefix",
            original.replace("prefix = \"CHE\"", "prefix = \"CHEMNITZ\""),
        ),
        (
            "bad cap",
            original.replace("default_cap_cents = 50000", "default_cap_cents = -1"),
        ),
        (
            "missing key",
            original.replace("keys/signing.key", "keys/nothing.key"),
        ),
    ];
    for (what, text_of_config) in cases {
        std::fs::write(&config, text_of_config).unwrap();
        for command in ["check", "run"] {
            let output = schein_node(&node, &[command]);
            assert_eq!(
                output.status.code(),
                Some(64),
                "{what} / {command}: {}",
                text(&output)
            );
            assert!(
                text(&output).starts_with("schein-node: "),
                "{}",
                text(&output)
            );
        }
    }
    std::fs::write(&config, &original).unwrap();
    let missing = schein_node(dir.path(), &["check"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(
        text(&missing).contains("schein-node init"),
        "{}",
        text(&missing)
    );

    // The environment overrides the file, and is validated as strictly.
    let output = Command::new(env!("CARGO_BIN_EXE_schein-node"))
        .current_dir(&node)
        .env("SCHEIN_LISTEN", "nowhere")
        .env("SCHEIN_IDENTITY", "/not/for/the/node.toml")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    assert!(text(&output).contains("nowhere"));
    let roster = node.join("roster.toml");
    std::fs::write(&roster, "[[member]]\nid = 1\n").unwrap();
    assert_eq!(schein_node(&node, &["check"]).status.code(), Some(64));
}

#[test]
fn operators_read_fingerprints_and_fee_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(init(root, "leipzig", "LEJ", 17446).status.success());
    assert!(init(root, "dresden", "DRS", 17447).status.success());
    let leipzig = root.join("leipzig");

    let add = schein_node(&leipzig, &["roster", "add", "../dresden/member.toml"]);
    assert!(add.status.success(), "{}", text(&add));
    let fingerprint = text(&add)
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint of its CA: "))
        .expect("roster add prints the fingerprint")
        .to_owned();
    // The list shows what the operators compare by phone.
    let list = schein_node(&leipzig, &["roster", "list"]);
    assert!(text(&list).contains(&fingerprint), "{}", text(&list));
    let own = schein_node(&leipzig, &["member"]);
    let own = text(&own)
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint of this member's CA: "))
        .expect("member prints the fingerprint")
        .to_owned();
    assert!(text(&list).contains(&own), "{}", text(&list));

    // The same entry again changes nothing and is no error; a different one needs --replace.
    let again = schein_node(&leipzig, &["roster", "add", "../dresden/member.toml"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("nothing changed"), "{}", text(&again));
    let moved = root.join("dresden/member.toml");
    let entry = std::fs::read_to_string(&moved).unwrap();
    std::fs::write(
        &moved,
        entry.replace("https://127.0.0.1:17447", "https://127.0.0.1:17448"),
    )
    .unwrap();
    let changed = schein_node(&leipzig, &["roster", "add", "../dresden/member.toml"]);
    assert!(!changed.status.success(), "{}", text(&changed));
    assert!(text(&changed).contains("--replace"), "{}", text(&changed));
    let replaced = schein_node(
        &leipzig,
        &["roster", "add", "--replace", "../dresden/member.toml"],
    );
    assert!(replaced.status.success(), "{}", text(&replaced));
    assert!(text(&replaced).contains("replaced"), "{}", text(&replaced));

    // Fee schedules in euros, with each catalogue's factor applied.
    let fees = schein_node(&leipzig, &["fees"]);
    assert!(fees.status.success(), "{}", text(&fees));
    let fees = text(&fees);
    assert!(
        fees.contains("GOZ (dentists): treatment, factor 2.0"),
        "{fees}"
    );
    let line = fees
        .lines()
        .find(|l| l.trim_start().starts_with("GOZ-0010"))
        .expect("GOZ-0010 listed");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["GOZ-0010", "5.62", "11.24"]
    );
    let theirs = schein_node(&leipzig, &["fees", "dresden"]);
    assert!(text(&theirs).contains("Fee schedule of dresden (dresden)"));
    let nobody = schein_node(&leipzig, &["fees", "nowhere"]);
    assert!(!nobody.status.success());
}

/// The password a command printed for the .p12 file it wrote.
fn printed_password(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password of the .p12 file: "))
        .unwrap_or_else(|| panic!("no password printed: {}", text(output)));
    assert!(
        stdout.contains("double-click"),
        "how to import it: {stdout}"
    );
    password.to_owned()
}

/// Whether `tool` can be run here.
fn present(tool: &str) -> bool {
    Command::new(tool)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs a command with `P12_PW` set and `input` on standard input.
fn run_with(program: &str, args: &[&str], password: &str, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .env("P12_PW", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("output")
}

/// The base64 bodies of the PEM blocks labelled `label` in `text`, without line breaks.
fn pem_bodies(text: &str, label: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut bodies = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line == begin {
            current = Some(String::new());
        } else if line == end {
            bodies.extend(current.take());
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    bodies
}

/// Opens `p12` with OpenSSL's pkcs12 command, which shares no code with the writer.
fn openssl_pkcs12(p12: &Path, password: &str, options: &[&str]) -> Output {
    let file = p12.to_str().expect("a UTF-8 path");
    let mut args = vec!["pkcs12", "-in", file, "-passin", "env:P12_PW"];
    args.extend_from_slice(options);
    run_with("openssl", &args, password, b"")
}

/// The public key (PEM) of a certificate or private key, through OpenSSL.
fn openssl_public_key(pem: &str, of_certificate: bool) -> String {
    let args: &[&str] = if of_certificate {
        &["x509", "-pubkey", "-noout"]
    } else {
        &["pkey", "-pubout"]
    };
    let output = run_with("openssl", args, "", pem.as_bytes());
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8(output.stdout).expect("PEM")
}

/// Checks that `p12` opens with `password` and only with it, holding the identity's
/// certificate, its key and the node's CA, encrypted in the form macOS Keychain imports: with
/// OpenSSL (without its legacy provider) and with Node.js, whose `tls` module is what the
/// browser tests load client certificates with. Both tools are on the project's machines; the
/// check fails if neither is.
fn assert_p12_opens(p12: &Path, password: &str, identity: &Path) {
    let identity = schein_node::client::IdentityFile::load(identity).expect("identity file");
    let wrong = format!("{password}x");
    let mut checked = 0;
    if present("openssl") {
        checked += 1;
        let info = openssl_pkcs12(p12, password, &["-info", "-noout"]);
        assert!(info.status.success(), "{}", text(&info));
        let info = text(&info);
        assert!(info.contains("MAC: sha1"), "{info}");
        assert_eq!(
            info.matches("pbeWithSHA1And3-KeyTripleDES-CBC").count(),
            2,
            "key and certificates in 3DES: {info}"
        );
        assert!(!info.contains("RC2") && !info.contains("PBES2"), "{info}");

        let client = openssl_pkcs12(p12, password, &["-nokeys", "-clcerts"]);
        assert!(client.status.success(), "{}", text(&client));
        let client = String::from_utf8(client.stdout).expect("PEM");
        assert_eq!(
            pem_bodies(&client, "CERTIFICATE"),
            pem_bodies(&identity.certificate, "CERTIFICATE")
        );
        let ca = openssl_pkcs12(p12, password, &["-nokeys", "-cacerts"]);
        assert!(ca.status.success(), "{}", text(&ca));
        assert_eq!(
            pem_bodies(&String::from_utf8(ca.stdout).expect("PEM"), "CERTIFICATE"),
            pem_bodies(&identity.node_ca, "CERTIFICATE")
        );
        let key = openssl_pkcs12(p12, password, &["-nocerts", "-nodes"]);
        assert!(key.status.success(), "{}", text(&key));
        let key = String::from_utf8(key.stdout).expect("PEM");
        assert_eq!(pem_bodies(&key, "PRIVATE KEY").len(), 1, "{key}");
        let key_public = openssl_public_key(&key, false);
        assert_eq!(key_public, openssl_public_key(&client, true), "key fits");
        assert_eq!(
            key_public,
            openssl_public_key(&identity.private_key, false),
            "the identity's own key"
        );

        for options in [&["-nokeys"][..], &["-nocerts", "-nodes"]] {
            let refused = openssl_pkcs12(p12, &wrong, options);
            assert!(!refused.status.success(), "a wrong password opens nothing");
            assert!(!String::from_utf8_lossy(&refused.stdout).contains("BEGIN"));
        }
    } else {
        eprintln!("openssl not found: .p12 files checked without it");
    }
    if present("node") {
        checked += 1;
        let script = "require('tls').createSecureContext({pfx: require('fs').readFileSync(0), \
                      passphrase: process.env.P12_PW})";
        let bytes = std::fs::read(p12).expect("the .p12 file");
        let opened = run_with("node", &["-e", script], password, &bytes);
        assert!(opened.status.success(), "Node.js: {}", text(&opened));
        let refused = run_with("node", &["-e", script], &wrong, &bytes);
        assert!(!refused.status.success(), "Node.js, wrong password");
        assert!(
            text(&refused).contains("mac verify failure"),
            "{}",
            text(&refused)
        );
    } else {
        eprintln!("node not found: .p12 files checked without it");
    }
    assert!(
        checked > 0,
        "neither openssl nor node found to check .p12 files"
    );
}

fn assert_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} is private", path.display());
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[test]
fn enroll_and_identity_export_write_p12_files_for_browsers() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), "leipzig", "LEJ", 17449).status.success());
    let leipzig = dir.path().join("leipzig");

    let enroll = schein_node(
        &leipzig,
        &["enroll", "--role", "provider", "--name", "praxis-nord"],
    );
    assert!(enroll.status.success(), "{}", text(&enroll));
    let password = printed_password(&enroll);
    let toml = leipzig.join("identities/provider-praxis-nord.toml");
    let p12 = leipzig.join("identities/provider-praxis-nord.p12");
    assert!(text(&enroll).contains("provider-praxis-nord.p12"));
    assert_private(&p12);
    assert_p12_opens(&p12, &password, &toml);
    let identity = std::fs::read_to_string(&toml).unwrap();
    assert!(
        !identity.contains(&password),
        "the password is stored nowhere"
    );

    // Enrolling the same name again, or one whose .p12 is in the way, leaves no new file.
    let twice = schein_node(
        &leipzig,
        &["enroll", "--role", "provider", "--name", "praxis-nord"],
    );
    assert!(!twice.status.success());
    std::fs::write(leipzig.join("identities/funder-land.p12"), b"someone's").unwrap();
    let blocked = schein_node(&leipzig, &["enroll", "--role", "funder", "--name", "land"]);
    assert!(!blocked.status.success(), "{}", text(&blocked));
    assert!(
        text(&blocked).contains("exists already"),
        "{}",
        text(&blocked)
    );
    assert!(!leipzig.join("identities/funder-land.toml").exists());

    // An identity from before: its .p12 under a generated, a given and an environment password.
    let office = "identities/office-office.toml";
    let generated = schein_node(&leipzig, &["identity", "export", office]);
    assert!(generated.status.success(), "{}", text(&generated));
    let exported = leipzig.join("identities/office-office.p12");
    assert_private(&exported);
    assert_p12_opens(
        &exported,
        &printed_password(&generated),
        &leipzig.join(office),
    );

    let again = schein_node(&leipzig, &["identity", "export", office]);
    assert_ne!(again.status.code(), Some(0), "never overwrites");
    assert!(text(&again).contains("exists already"), "{}", text(&again));
    assert!(!String::from_utf8_lossy(&again.stdout).contains("password of"));

    std::fs::write(
        dir.path().join("password.txt"),
        "Dresden liegt an der Elbe\n",
    )
    .unwrap();
    let from_file = schein_node(
        &leipzig,
        &[
            "identity",
            "export",
            office,
            "--out",
            "../console.p12",
            "--password-file",
            "../password.txt",
        ],
    );
    assert!(from_file.status.success(), "{}", text(&from_file));
    assert!(!text(&from_file).contains("password of the .p12 file"));
    let console = dir.path().join("console.p12");
    assert_private(&console);
    assert_p12_opens(&console, "Dresden liegt an der Elbe", &leipzig.join(office));

    let from_env = schein_node_with_env(
        &leipzig,
        &["identity", "export", office, "--out", "../env.p12"],
        &[("SCHEIN_P12_PASSWORD", "aus der Umgebung")],
    );
    assert!(from_env.status.success(), "{}", text(&from_env));
    assert_p12_opens(
        &dir.path().join("env.p12"),
        "aus der Umgebung",
        &leipzig.join(office),
    );

    let empty = schein_node_with_env(
        &leipzig,
        &["identity", "export", office, "--out", "../empty.p12"],
        &[("SCHEIN_P12_PASSWORD", "")],
    );
    assert!(!empty.status.success(), "{}", text(&empty));
    assert!(!dir.path().join("empty.p12").exists());
    let missing = schein_node(&leipzig, &["identity", "export", "identities/nobody.toml"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("nobody.toml"), "{}", text(&missing));
}

/// An upgrade as an operator runs it: `migrate` leaves a store of this format alone, and brings
/// one of format 1 (as versions before formats were recorded left it) to this format after a
/// copy of it; the node's store then opens. Running it again does nothing.
#[test]
fn migrate_backs_up_an_older_store_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path(), "leipzig", "LEJ", 17543).status.success());
    let node = dir.path().join("leipzig");
    let data = node.join("data");
    drop(schein_node::store::Store::open(&data).unwrap());

    let current = schein_node(&node, &["migrate"]);
    assert!(current.status.success(), "{}", text(&current));
    assert!(
        text(&current).contains("nothing to do"),
        "{}",
        text(&current)
    );

    {
        let db = sled::Config::new()
            .path(&data)
            .flush_every_ms(None)
            .open()
            .unwrap();
        db.open_tree("meta")
            .unwrap()
            .remove("format_version")
            .unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        schein_node::store::Store::open(&data),
        Err(schein_node::store::StoreError::NeedsMigration { found: 1, .. })
    ));
    let backup = dir.path().join("before-upgrade");
    let migrated = schein_node(&node, &["migrate", "--backup", backup.to_str().unwrap()]);
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(
        text(&migrated).contains("from format 1 to 2"),
        "{}",
        text(&migrated)
    );
    assert!(backup.join("conf").exists(), "the copy is made");
    drop(schein_node::store::Store::open(&data).expect("opens after migrating"));
    let again = schein_node(&node, &["migrate"]);
    assert!(text(&again).contains("nothing to do"), "{}", text(&again));
}
