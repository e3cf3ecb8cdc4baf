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
    assert_eq!(states(&mut office).await, expected);
    assert_eq!(expected.len(), 17);
    child.kill().unwrap();
    child.wait().unwrap();
}
