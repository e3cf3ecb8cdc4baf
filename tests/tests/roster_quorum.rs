//! A roster the members change together, with real `schein-node` processes and commands as
//! operators type them. Leipzig, Dresden and Chemnitz run (version 0, assembled by hand);
//! Zwickau wants to join. Leipzig proposes it, Zwickau signs as the joining city: with these
//! two signatures (threshold − 1) nobody may adopt it; Dresden's third signature adopts it at
//! Dresden, and Leipzig and Chemnitz take it up by themselves without any file copied to them.
//! Zwickau installs the adopted version, starts, and its practice settles a claim on a Leipzig
//! voucher. Leipzig rotates its signing key: vouchers from before verify, new ones carry the new
//! key, and every member takes it up by itself. Dresden and Chemnitz declare Leipzig's new key
//! compromised from yesterday: a voucher it signed today is refused everywhere, an old one still
//! verifies. Going back to an older version is refused. Chemnitz is expelled: its vouchers are
//! refused and its node learns it from the others.

use std::process::Command;
use std::time::Duration;

use schein_node::pki::Role;
use schein_node::roster::Roster;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimState, InvalidReason, IssueVoucherRequest, Verdict, VerifyVoucherRequest,
};
use schein_proto::{Day, FullCode};
use schein_tests::process::{NodeProcess, ProcessFederation, node_binary, text};
use schein_tests::{FEE_CODES, claim_request};

/// `schein-node ARGS` in `node`'s directory, as its operator runs it: exit status and output.
fn operator(node: &NodeProcess, args: &[&str]) -> (bool, String) {
    let output = Command::new(node_binary().expect("the schein-node binary"))
        .current_dir(&node.dir)
        .env_remove("SCHEIN_NODE_CONFIG")
        .args(args)
        .output()
        .expect("schein-node runs");
    (
        output.status.success(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

fn roster_version(node: &NodeProcess) -> u64 {
    Roster::load(&node.roster_path())
        .expect("the roster file reads")
        .version()
}

/// Waits until `node` logged that it adopted `version`.
async fn adopted(node: &NodeProcess, version: u64) {
    node.wait_for_log(
        0,
        &["roster version adopted", &format!("version={version}")],
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|e| panic!("{} did not adopt version {version}: {e}", node.id));
    assert_eq!(roster_version(node), version, "{}'s roster file", node.id);
}

async fn issue(office: &schein_node::client::IdentityFile) -> String {
    OfficeClient::new(office.connect(None).await.expect("office connects"))
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .expect("issued")
        .into_inner()
        .full_code
}

async fn verify(
    practice: &schein_node::client::IdentityFile,
    code: &str,
) -> (Verdict, InvalidReason, String) {
    let answer = ProviderClient::new(practice.connect(None).await.expect("practice connects"))
        .verify_voucher(VerifyVoucherRequest {
            code: code.to_owned(),
            for_scope: 0,
        })
        .await
        .expect("verify answers")
        .into_inner();
    (answer.verdict(), answer.reason(), answer.message)
}

fn key_of(code: &str) -> String {
    let full = FullCode::parse(code).expect("a full code");
    full.0.claimed_key().expect("names its key").1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_members_change_the_roster_together_and_every_node_follows() {
    let mut federation = ProcessFederation::create(&[
        ("leipzig", "Leipzig", "LEJ"),
        ("dresden", "Dresden", "DRS"),
        ("chemnitz", "Chemnitz", "CHE"),
    ])
    .unwrap();
    federation
        .create_outsider("zwickau", "Zwickau", "ZWI")
        .unwrap();
    for node in &mut federation.nodes {
        node.env
            .push(("SCHEIN_ROSTER_INTERVAL_SECONDS".into(), "1".into()));
    }
    for id in ["leipzig", "dresden", "chemnitz"] {
        federation.start_one(id).await.unwrap();
    }
    let proposal = federation.dir.path().join("join-zwickau.toml");
    let proposal_arg = proposal.to_str().unwrap();
    let zwickau_entry = federation.node("zwickau").dir.join("member.toml");

    // Leipzig proposes; Zwickau signs as the joining city. Two signatures, threshold 2 of
    // version 0 counts members only: Zwickau is not one yet, so it is one short.
    let (ok, out) = operator(
        federation.node("leipzig"),
        &[
            "roster",
            "propose",
            "--add",
            zwickau_entry.to_str().unwrap(),
            "--threshold",
            "2",
            "--out",
            proposal_arg,
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("JOIN  zwickau"), "{out}");
    let (ok, out) = operator(
        federation.node("zwickau"),
        &["roster", "sign", proposal_arg, "--yes"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("joining member 'zwickau'"), "{out}");
    for at in ["leipzig", "chemnitz"] {
        let (ok, out) = operator(federation.node(at), &["roster", "adopt", proposal_arg]);
        assert!(!ok, "adopted with threshold − 1 signatures at {at}: {out}");
        assert!(out.contains("1 of the 2 member signatures"), "{out}");
        assert_eq!(roster_version(federation.node(at)), 0);
    }

    // Dresden's operator reads it first: without --yes (and no terminal to ask) nothing is signed.
    let (ok, out) = operator(
        federation.node("dresden"),
        &["roster", "sign", proposal_arg],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("JOIN  zwickau") && out.contains("--yes"),
        "{out}"
    );
    assert_eq!(roster_version(federation.node("dresden")), 0);

    // Dresden's signature completes it; Leipzig and Chemnitz follow by themselves.
    let (ok, out) = operator(
        federation.node("dresden"),
        &["roster", "sign", proposal_arg, "--yes"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("version 1 adopted here"), "{out}");
    for id in ["dresden", "leipzig", "chemnitz"] {
        adopted(federation.node(id), 1).await;
    }
    let (ok, out) = operator(
        federation.node("zwickau"),
        &["roster", "adopt", proposal_arg, "--first", "--yes"],
    );
    assert!(ok, "{out}");
    federation.start_one("zwickau").await.unwrap();

    // Zwickau's practice settles a claim on a Leipzig voucher.
    let leipzig_office = federation.node("leipzig").office().unwrap();
    let zwickau_practice = federation
        .node("zwickau")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    let before_rotation = issue(&leipzig_office).await;
    let (fee_code, cents) = FEE_CODES[0];
    let claim = ProviderClient::new(zwickau_practice.connect(None).await.unwrap())
        .submit_claim(claim_request(
            "z-1",
            &before_rotation,
            &[(fee_code, 1, cents)],
            Category::Treatment,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);

    // Leipzig rotates its key while it runs: new vouchers carry the new key, old ones verify.
    let old_key = key_of(&before_rotation);
    let (ok, out) = operator(federation.node("leipzig"), &["key", "rotate"]);
    assert!(ok, "{out}");
    for id in ["leipzig", "dresden", "chemnitz", "zwickau"] {
        adopted(federation.node(id), 2).await;
    }
    let after_rotation = issue(&leipzig_office).await;
    let new_key = key_of(&after_rotation);
    assert_ne!(new_key, old_key, "the new voucher names the new key");
    let new_key_file = federation
        .node("leipzig")
        .dir
        .join(format!("keys/signing-{new_key}.key"));
    assert!(new_key_file.exists(), "{}", new_key_file.display());
    let dresden_practice = federation
        .node("dresden")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    for code in [&before_rotation, &after_rotation] {
        let (verdict, _, message) = verify(&dresden_practice, code).await;
        assert_eq!(verdict, Verdict::Valid, "{message}");
    }

    // Dresden and Chemnitz declare the new key compromised from yesterday: what it signed today
    // is void at every member, what the old key signed stays valid.
    let yesterday = Day::today()
        .checked_add_days(-1)
        .expect("yesterday is a day");
    let declaration = federation.dir.path().join("compromise.toml");
    let (ok, out) = operator(
        federation.node("dresden"),
        &[
            "roster",
            "propose",
            "--compromised",
            &format!("leipzig/{new_key}@{yesterday}"),
            "--out",
            declaration.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("COMPROMISED key"), "{out}");
    let (ok, out) = operator(
        federation.node("chemnitz"),
        &["roster", "sign", declaration.to_str().unwrap(), "--yes"],
    );
    assert!(ok, "{out}");
    for id in ["chemnitz", "dresden", "zwickau", "leipzig"] {
        adopted(federation.node(id), 3).await;
    }
    let chemnitz_practice = federation
        .node("chemnitz")
        .enroll(Role::Provider, "praxis")
        .unwrap();
    for practice in [&dresden_practice, &chemnitz_practice, &zwickau_practice] {
        let (verdict, reason, message) = verify(practice, &after_rotation).await;
        assert_eq!(verdict, Verdict::Invalid, "{message}");
        assert_eq!(reason, InvalidReason::KeyCompromised, "{message}");
        let (verdict, _, message) = verify(practice, &before_rotation).await;
        assert_eq!(verdict, Verdict::Valid, "{message}");
    }
    assert_ne!(
        key_of(&issue(&leipzig_office).await),
        new_key,
        "Leipzig no longer signs with the compromised key"
    );

    // Nobody goes back: the first version is refused at every member.
    for id in ["leipzig", "dresden"] {
        let (ok, out) = operator(federation.node(id), &["roster", "adopt", proposal_arg]);
        assert!(!ok, "{out}");
        assert!(out.contains("never goes back"), "{out}");
        assert_eq!(roster_version(federation.node(id)), 3);
    }
    let (ok, out) = operator(federation.node("zwickau"), &["roster", "status"]);
    assert!(ok, "{out}");
    assert!(out.contains("roster version 3, threshold 2 of 4"), "{out}");
    assert!(out.contains("COMPROMISED"), "{out}");

    // Chemnitz is expelled: once adopted, its vouchers are refused and its node is no longer
    // let in, without anyone touching the other nodes.
    let chemnitz_voucher = issue(&federation.node("chemnitz").office().unwrap()).await;
    let expulsion = federation.dir.path().join("expel.toml");
    let (ok, out) = operator(
        federation.node("dresden"),
        &[
            "roster",
            "propose",
            "--remove",
            "chemnitz",
            "--out",
            expulsion.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = operator(
        federation.node("zwickau"),
        &["roster", "sign", expulsion.to_str().unwrap(), "--yes"],
    );
    assert!(ok, "{out}");
    for id in ["zwickau", "dresden", "leipzig"] {
        adopted(federation.node(id), 4).await;
    }
    federation
        .node("chemnitz")
        .wait_for_log(
            0,
            &["the members removed this node from the roster"],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let (verdict, reason, message) = verify(&dresden_practice, &chemnitz_voucher).await;
    assert_eq!(verdict, Verdict::Invalid, "{message}");
    assert_eq!(reason, InvalidReason::UnknownIssuer, "{message}");
    for node in &mut federation.nodes {
        node.assert_alive().unwrap();
    }
}
