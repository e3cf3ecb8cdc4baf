//! A real `schein-node` process killed with SIGKILL right after it answered keeps everything it
//! acknowledged: each change is flushed before the answer, and sled's background flushing is
//! off, so nothing else could have saved it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use schein_node::client::IdentityFile;
use schein_node::init::{InitOptions, init};
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::{
    IssueVoucherRequest, ListVouchersRequest, RevocationReason, RevokeVoucherRequest, VoucherState,
};
use tonic::transport::Channel;

fn start(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_schein-node"))
        .current_dir(dir)
        .env_remove("SCHEIN_NODE_CONFIG")
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start schein-node")
}

/// Connects as soon as the node serves; gives up after 20 s.
async fn ready(identity: &IdentityFile) -> OfficeClient<Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(channel) = identity.connect(None).await {
            let mut office = OfficeClient::new(channel);
            if office
                .list_vouchers(ListVouchersRequest::default())
                .await
                .is_ok()
            {
                return office;
            }
        }
        assert!(Instant::now() < deadline, "the node did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn states(office: &mut OfficeClient<Channel>) -> BTreeMap<String, VoucherState> {
    let listed = office
        .list_vouchers(ListVouchersRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    listed
        .vouchers
        .into_iter()
        .map(|v| (v.short_code.clone(), v.state()))
        .collect()
}

#[tokio::test]
async fn sigkill_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let created = init(&InitOptions {
        dir: dir.path().join("leipzig"),
        node_id: "leipzig".into(),
        name: "Leipzig".into(),
        prefix: "LEJ".into(),
        listen: format!("127.0.0.1:{port}"),
        endpoint: format!("https://127.0.0.1:{port}"),
        web_listen: None,
        hostnames: vec![],
        office_name: "office".into(),
    })
    .unwrap();
    let node_dir = created.config_path.parent().unwrap().to_path_buf();
    let identity = IdentityFile::load(&created.office_identity_path).unwrap();

    let mut expected = BTreeMap::new();
    let mut child = start(&node_dir);
    for round in 0..3 {
        let mut office = ready(&identity).await;
        assert_eq!(
            states(&mut office).await,
            expected,
            "round {round}: state after restart"
        );
        let mut issued = Vec::new();
        for _ in 0..5 {
            let voucher = office
                .issue_voucher(IssueVoucherRequest::default())
                .await
                .unwrap()
                .into_inner();
            expected.insert(voucher.short_code.clone(), VoucherState::Active);
            issued.push(voucher.short_code);
        }
        office
            .revoke_voucher(RevokeVoucherRequest {
                code: issued[2].clone(),
                reason: RevocationReason::Lost as i32,
            })
            .await
            .unwrap();
        expected.insert(issued[2].clone(), VoucherState::Revoked);
        // The last change before the kill alternates between an issue and a revocation.
        if round % 2 == 0 {
            let voucher = office
                .issue_voucher(IssueVoucherRequest::default())
                .await
                .unwrap()
                .into_inner();
            expected.insert(voucher.short_code, VoucherState::Active);
        } else {
            office
                .revoke_voucher(RevokeVoucherRequest {
                    code: issued[4].clone(),
                    reason: RevocationReason::Stolen as i32,
                })
                .await
                .unwrap();
            expected.insert(issued[4].clone(), VoucherState::Revoked);
        }
        // Killed the moment the last answer arrived.
        child.kill().unwrap();
        child.wait().unwrap();
        child = start(&node_dir);
    }
    let mut office = ready(&identity).await;
    let after = states(&mut office).await;
    assert_eq!(after, expected);
    // What the node lists after three kills, counted from its answer: 3 rounds of 5 vouchers
    // plus two more, 4 of them revoked.
    let revoked = after
        .values()
        .filter(|s| **s == VoucherState::Revoked)
        .count();
    assert_eq!((after.len(), revoked), (17, 4));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Two real node processes, Leipzig (issuer) and Dresden (redeemer). Claims stream in at
/// Dresden while Leipzig is killed with SIGKILL and started again: every claim ends settled
/// exactly once, and Leipzig's books equal Dresden's.
#[tokio::test]
async fn sigkill_of_the_issuer_while_settling_loses_and_doubles_nothing() {
    use schein_node::config::Config;
    use schein_node::pki::Role;
    use schein_node::roster::{MemberEntry, Roster};
    use schein_proto::v1::provider_client::ProviderClient;
    use schein_proto::v1::{
        Category, ClaimItem, ClaimState, ClaimStatusRequest, ProviderKind, ShowVoucherRequest,
        SubmitClaimRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let mut nodes = Vec::new();
    for (id, prefix) in [("leipzig", "LEJ"), ("dresden", "DRS")] {
        let port = free_port();
        let created = init(&InitOptions {
            dir: dir.path().join(id),
            node_id: id.into(),
            name: id.into(),
            prefix: prefix.into(),
            listen: format!("127.0.0.1:{port}"),
            endpoint: format!("https://127.0.0.1:{port}"),
            web_listen: None,
            hostnames: vec![],
            office_name: "office".into(),
        })
        .unwrap();
        nodes.push(created);
    }
    // The operators exchange member entries.
    for (mine, theirs) in [(0, 1), (1, 0)] {
        let roster_path = nodes[mine]
            .config_path
            .parent()
            .unwrap()
            .join("roster.toml");
        let roster = Roster::load(&roster_path).unwrap();
        let entry = MemberEntry::load(&nodes[theirs].member_path).unwrap();
        roster.upsert(entry).unwrap().0.save(&roster_path).unwrap();
    }
    let leipzig_dir = nodes[0].config_path.parent().unwrap().to_path_buf();
    let dresden_dir = nodes[1].config_path.parent().unwrap().to_path_buf();
    let dresden_config = Config::load_with_env(&nodes[1].config_path, []).unwrap();
    let provider = schein_node::init::enroll(
        &dresden_config,
        Role::Provider,
        "praxis",
        30,
        &dresden_dir.join("identities/provider-praxis.toml"),
    )
    .unwrap();
    let leipzig_office = IdentityFile::load(&nodes[0].office_identity_path).unwrap();

    let mut leipzig = start(&leipzig_dir);
    let mut dresden = start(&dresden_dir);
    let mut office = ready(&leipzig_office).await;
    let connect_by = Instant::now() + Duration::from_secs(20);
    let provider_channel = loop {
        if let Ok(channel) = provider.connect(None).await {
            break channel;
        }
        assert!(Instant::now() < connect_by, "Dresden did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let voucher = office
        .issue_voucher(IssueVoucherRequest {
            valid_from: Some(
                schein_proto::Day::today()
                    .checked_add_days(-30)
                    .unwrap()
                    .into(),
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let claims = 24;
    let mut acknowledged = Vec::new();
    for i in 0..claims {
        let request = SubmitClaimRequest {
            claim_id: format!("k{i}"),
            code: voucher.full_code.clone(),
            service_date: Some(
                schein_proto::Day::today()
                    .checked_add_days(-i)
                    .unwrap()
                    .into(),
            ),
            provider_kind: ProviderKind::Practice as i32,
            items: vec![ClaimItem {
                fee_code: "GOAE-1".into(),
                count: 1,
                amount_cents: 466,
            }],
            category: Category::Treatment as i32,
        };
        let answer = ProviderClient::new(provider_channel.clone())
            .submit_claim(request)
            .await;
        if let Ok(answer) = answer {
            assert!(matches!(
                answer.get_ref().state(),
                ClaimState::Settled | ClaimState::Pending
            ));
            acknowledged.push(format!("k{i}"));
        }
        // Kill the issuer twice while claims arrive, and bring it back.
        if i == claims / 3 || i == 2 * claims / 3 {
            leipzig.kill().unwrap();
            leipzig.wait().unwrap();
            leipzig = start(&leipzig_dir);
        }
    }
    assert_eq!(
        acknowledged.len(),
        claims as usize,
        "Dresden acknowledged every claim"
    );
    let mut settled = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &acknowledged {
        loop {
            let claim = ProviderClient::new(provider_channel.clone())
                .claim_status(ClaimStatusRequest {
                    claim_id: id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if claim.state() == ClaimState::Settled {
                settled += claim.amount_cents;
                break;
            }
            assert_ne!(claim.state(), ClaimState::Rejected, "{}", claim.message);
            assert!(Instant::now() < deadline, "claim {id} never settled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut office = ready(&leipzig_office).await;
    let shown = office
        .show_voucher(ShowVoucherRequest {
            code: voucher.short_code.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.claimed_cents, settled, "none lost, none doubled");
    assert_eq!(settled, 466 * i64::from(claims));
    for child in [&mut leipzig, &mut dresden] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
