//! Metrics and health for operators, on real `schein-node` processes: Leipzig (text logs) and
//! Dresden (JSON logs) run; a Dresden practice verifies and claims on a Leipzig voucher, one claim
//! settled and one rejected over the cap. Each node's plain-HTTP listener then shows the request
//! counters by service, method and code, Leipzig's settlement decisions by reason, the outbox,
//! the peers, the store and how long the certificates last, without a name or code in any label;
//! `/healthz` and `/readyz` answer 200. Server reflection lists the services to a caller with a
//! client certificate. Fifty connections that send garbage get one warning line in Leipzig's log,
//! not fifty, and are all counted; Dresden's log lines are JSON objects.

use std::time::Duration;

use schein_node::pki::Role;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::provider_client::ProviderClient;
use schein_proto::v1::{
    Category, ClaimState, IssueVoucherRequest, RejectReason, Scope, Verdict, VerifyVoucherRequest,
};
use schein_tests::claim_request;
use schein_tests::process::ProcessFederation;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// `GET path` over plain HTTP/1.1 on `127.0.0.1:port`: the status code and the body.
async fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics listener accepts");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the metrics listener answers within 10 s")
        .expect("the response is read");
    let response = String::from_utf8(response).expect("the response is text");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("the response has a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("the response has a status");
    (status, body.to_owned())
}

/// The value of the sample `name{labels}` (exactly as exposed) in `text`, if it is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_requests_settlements_expiry_health_and_bounded_logs() {
    let mut federation = ProcessFederation::leipzig_and_dresden().expect("set up");
    federation
        .node_mut("dresden")
        .env
        .push(("SCHEIN_LOG_FORMAT".into(), "json".into()));
    federation.start_all().await.expect("both nodes serve");
    let leipzig = federation.node("leipzig");
    let dresden = federation.node("dresden");

    // Health for load balancers, without any certificate.
    for node in [leipzig, dresden] {
        assert_eq!(get(node.metrics_port, "/healthz").await.0, 200);
        let (status, body) = get(node.metrics_port, "/readyz").await;
        assert_eq!(status, 200, "{body}");
    }

    let verify_ok = "schein_grpc_requests_total{service=\"schein.v1.Provider\",method=\"VerifyVoucher\",code=\"OK\"}";
    let (_, before) = get(dresden.metrics_port, "/metrics").await;
    let verified_before = sample(&before, verify_ok).unwrap_or(0.0);

    // A Leipzig voucher, verified and claimed twice at a Dresden practice.
    let mut office = OfficeClient::new(
        leipzig
            .office()
            .expect("office")
            .connect(None)
            .await
            .expect("connect"),
    );
    let voucher = office
        .issue_voucher(IssueVoucherRequest {
            scope: vec![Scope::Medication as i32],
            ..Default::default()
        })
        .await
        .expect("issued")
        .into_inner();
    let practice = dresden
        .enroll(Role::Provider, "praxis-neustadt")
        .expect("enrolled");
    let channel = practice.connect(None).await.expect("connect");
    let mut provider = ProviderClient::new(channel.clone());
    let verification = provider
        .verify_voucher(VerifyVoucherRequest {
            code: voucher.short_code.clone(),
            for_scope: Scope::Unspecified as i32,
        })
        .await
        .expect("verified")
        .into_inner();
    assert_eq!(
        verification.verdict(),
        Verdict::Valid,
        "{}",
        verification.message
    );
    let settled = provider
        .submit_claim(claim_request(
            "metrics-1",
            &voucher.full_code,
            &[("KH-TAG", 1, 40_000)],
            Category::Treatment,
        ))
        .await
        .expect("claimed")
        .into_inner();
    assert_eq!(settled.state(), ClaimState::Settled, "{}", settled.message);
    let over = provider
        .submit_claim(claim_request(
            "metrics-2",
            &voucher.full_code,
            &[("KH-AMB", 2, 20_000)],
            Category::Treatment,
        ))
        .await
        .expect("claimed")
        .into_inner();
    assert_eq!(
        (over.state(), over.reason()),
        (ClaimState::Rejected, RejectReason::OverCap),
        "{}",
        over.message
    );
    // A practice may not issue: refused with PERMISSION_DENIED.
    let refused = OfficeClient::new(channel.clone())
        .issue_voucher(IssueVoucherRequest::default())
        .await
        .expect_err("a practice may not issue");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let (status, redeemer) = get(dresden.metrics_port, "/metrics").await;
    assert_eq!(status, 200);
    println!("Dresden's metrics after the claims:\n{redeemer}");
    let verified_after = sample(&redeemer, verify_ok).expect("verify requests are counted");
    assert!(
        verified_after >= verified_before + 1.0,
        "{verified_before} → {verified_after}"
    );
    assert!(
        sample(&redeemer, "schein_grpc_requests_total{service=\"schein.v1.Office\",method=\"IssueVoucher\",code=\"PERMISSION_DENIED\"}")
            .is_some_and(|n| n >= 1.0),
        "the refused call is counted with its code"
    );
    assert!(
        sample(&redeemer, "schein_grpc_request_duration_seconds_count{service=\"schein.v1.Provider\",method=\"SubmitClaim\",code=\"OK\"}")
            .is_some_and(|n| n >= 2.0),
        "claims are timed"
    );
    assert_eq!(
        sample(&redeemer, "schein_outbox_depth"),
        Some(0.0),
        "both claims answered"
    );
    assert_eq!(
        sample(&redeemer, "schein_outbox_oldest_age_seconds"),
        Some(0.0)
    );
    assert_eq!(sample(&redeemer, "schein_peers"), Some(1.0));
    assert_eq!(
        sample(&redeemer, "schein_peers_reachable"),
        Some(1.0),
        "Leipzig answered"
    );
    assert!(sample(&redeemer, "schein_store_size_bytes").is_some_and(|b| b > 0.0));
    assert!(
        sample(&redeemer, "schein_store_flush_duration_seconds_count").is_some_and(|n| n >= 2.0),
        "each stored claim was flushed"
    );
    // The node's certificate is made for five years, its CA for longer.
    let tls_days = sample(
        &redeemer,
        "schein_certificate_expiry_days{certificate=\"tls\"}",
    )
    .expect("the certificate's expiry");
    assert!((1_000.0..=5.0 * 366.0).contains(&tls_days), "{tls_days}");
    assert!(
        sample(
            &redeemer,
            "schein_certificate_expiry_days{certificate=\"ca\"}"
        )
        .is_some_and(|days| days >= tls_days - 1.0)
    );
    // Privacy: no provider, no code, no serial in any label.
    let code_part = voucher
        .short_code
        .split('-')
        .nth(1)
        .expect("a grouped short code");
    for text in [&before, &redeemer] {
        assert!(!text.contains("praxis"), "a provider name in the metrics");
        assert!(!text.contains(code_part), "part of a code in the metrics");
        assert!(!text.contains("metrics-1"), "a claim id in the metrics");
    }

    let (_, issuer) = get(leipzig.metrics_port, "/metrics").await;
    println!("Leipzig's settlement metrics:");
    for line in issuer
        .lines()
        .filter(|l| l.starts_with("schein_settlements"))
    {
        println!("  {line}");
    }
    assert_eq!(
        sample(
            &issuer,
            "schein_settlements_total{result=\"accepted\",reason=\"\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &issuer,
            "schein_settlements_total{result=\"rejected\",reason=\"over_cap\"}"
        ),
        Some(1.0)
    );

    // Reflection: the services, to any caller with an accepted certificate.
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("a reflection answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a list of services: {answer:?}");
    };
    let services: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    println!("reflection lists: {services:?}");
    for service in [
        "schein.v1.Provider",
        "schein.v1.Office",
        "schein.v1.Federation",
        "schein.v1.Reports",
        "schein.v1.Identities",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.contains(&service),
            "{service} missing: {services:?}"
        );
    }
    assert!(
        !services.iter().any(|s| s.starts_with("schein.bench")),
        "the benchmarks' service is not served: {services:?}"
    );
    // The operator's way (README): the node's own certificate at its own port.
    let own = leipzig
        .node_identity_at(leipzig)
        .expect("the node's certificate");
    let mut reflection = ServerReflectionClient::new(own.connect(None).await.expect("connect"));
    let listed = reflection
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .expect("reflection answers the node's own certificate")
        .into_inner()
        .message()
        .await
        .expect("a reflection answer");
    assert!(listed.is_some(), "one message");

    // Fifty connections that send garbage instead of a TLS handshake: one line in the log.
    let needles = ["tls handshake refused", "127.0.0.1"];
    assert!(leipzig.log_lines(&needles).is_empty(), "no refusal so far");
    let mut garbage = Vec::new();
    for _ in 0..50 {
        let port = leipzig.port;
        garbage.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the node accepts");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: leipzig\r\n\r\n")
                .await
                .expect("garbage is sent");
            // The node answers with an alert and closes.
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut rest)).await;
        }));
    }
    for connection in garbage {
        connection.await.expect("a garbage connection ended");
    }
    leipzig
        .wait_for_log(0, &needles, Duration::from_secs(10))
        .await
        .expect("the first refusal is logged");
    // The node closes a refused socket a moment before it counts the refusal: wait for it.
    let mut counted = 0.0;
    for _ in 0..100 {
        let (_, after_garbage) = get(leipzig.metrics_port, "/metrics").await;
        counted = sample(
            &after_garbage,
            "schein_tls_handshakes_refused_total{reason=\"protocol\"}",
        )
        .unwrap_or(0.0);
        if counted >= 50.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted >= 50.0, "every refusal is counted: {counted}");
    let lines = leipzig.log_lines(&needles);
    println!(
        "50 garbage connections: {counted} refusals counted, {} logged: {lines:?}",
        lines.len()
    );
    assert_eq!(lines.len(), 1, "one line per source and minute: {lines:#?}");

    // Dresden's log: one JSON object per line.
    let log = dresden.log();
    let mut objects = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
        objects += 1;
    }
    assert!(
        log.lines()
            .any(|l| l.contains("\"message\":\"node serving\"")),
        "the start is logged as JSON: {log}"
    );
    println!("Dresden logged {objects} JSON lines");
}
