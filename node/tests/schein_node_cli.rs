//! The `schein-node` binary as an operator uses it: init, check, enroll, roster, and refusals
//! of broken configuration with exit code 64 before anything is bound.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `schein-node` and collects its output; a command that has not finished within 30 s
/// (a `run` that started serving although it should have refused) is killed and fails.
fn schein_node(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_schein-node"))
        .current_dir(dir)
        .env_remove("SCHEIN_NODE_CONFIG")
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
