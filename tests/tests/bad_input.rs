//! Bad input of every kind gets a clear refusal, never a panic; the node keeps serving and
//! nothing stored changes.

use schein_proto::error::reason_of;
use schein_proto::v1::office_client::OfficeClient;
use schein_proto::v1::{
    Day, ErrorReason, IssueVoucherRequest, ListVouchersRequest, RevocationReason,
    RevokeVoucherRequest, ShowVoucherRequest, VerifyVoucherRequest,
};
use schein_tests::raw::send_raw;
use schein_tests::{Saxony, connect, issue};
use tonic::Code;
use tonic::transport::Channel;

async fn count_vouchers(office: &mut OfficeClient<Channel>) -> usize {
    office
        .list_vouchers(ListVouchersRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("listing works")
        .into_inner()
        .vouchers
        .len()
}

#[tokio::test]
async fn garbage_and_oversized_messages_are_refused_and_the_node_keeps_serving() {
    let saxony = Saxony::start().await.unwrap();
    let identity = saxony.federation.office("leipzig").unwrap();
    let channel = connect(&identity).await.unwrap();
    let mut office = OfficeClient::new(channel.clone());
    issue(&mut office, &[]).await.unwrap();

    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 64],
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        b"\x12\x05hello".to_vec(),
        (0..=255u8).collect(),
    ];
    for body in garbage {
        let status = send_raw(channel.clone(), "/schein.v1.Office/IssueVoucher", body)
            .await
            .unwrap_err();
        // DESIGN.md, "Errors": undecodable is the caller's mistake, never INTERNAL.
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("decoded"), "{status:?}");
        assert_eq!(
            schein_proto::error::reason_of(&status),
            Some(schein_proto::v1::ErrorReason::InvalidArgument)
        );
    }
    let provider = saxony
        .federation
        .enroll("leipzig", schein_node::pki::Role::Provider, "praxis")
        .unwrap();
    let provider_channel = connect(&provider).await.unwrap();
    let huge = vec![0x42; 200 * 1024];
    let status = send_raw(provider_channel, "/schein.v1.Provider/VerifyVoucher", huge)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let status = send_raw(channel.clone(), "/schein.v1.Office/NoSuchMethod", vec![])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    assert_eq!(
        count_vouchers(&mut office).await,
        1,
        "nothing stored changed"
    );
    issue(&mut office, &[]).await.unwrap();
    assert_eq!(
        count_vouchers(&mut office).await,
        2,
        "the node keeps serving"
    );
    saxony.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_office_requests_get_a_reason_and_change_nothing() {
    let saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("dresden").await.unwrap();
    let voucher = issue(&mut office, &[]).await.unwrap();
    let today = schein_proto::Day::today();
    let day = |offset: i32| Some(Day::from(today.checked_add_days(offset).unwrap()));

    let bad_issues = [
        IssueVoucherRequest {
            cap_cents: Some(-5),
            ..Default::default()
        },
        IssueVoucherRequest {
            cap_cents: Some(0),
            ..Default::default()
        },
        IssueVoucherRequest {
            cap_cents: Some(i64::MAX),
            ..Default::default()
        },
        IssueVoucherRequest {
            valid_until: day(-1),
            ..Default::default()
        },
        IssueVoucherRequest {
            valid_from: day(-100),
            ..Default::default()
        },
        IssueVoucherRequest {
            valid_from: day(10),
            valid_until: day(5),
            ..Default::default()
        },
        IssueVoucherRequest {
            valid_until: day(400),
            ..Default::default()
        },
        IssueVoucherRequest {
            valid_from: Some(Day { days: i32::MAX }),
            ..Default::default()
        },
        IssueVoucherRequest {
            scope: vec![99],
            ..Default::default()
        },
    ];
    for request in bad_issues {
        let status = office.issue_voucher(request.clone()).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{request:?}: {status:?}"
        );
        assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));
        assert!(!status.message().is_empty());
    }

    let bad_revokes = [
        (
            voucher.short_code.clone(),
            RevocationReason::Unspecified as i32,
            ErrorReason::InvalidArgument,
        ),
        (voucher.short_code.clone(), 77, ErrorReason::InvalidArgument),
        (
            "DRS-0000".to_owned(),
            RevocationReason::Lost as i32,
            ErrorReason::MalformedCode,
        ),
        (
            "SCHEIN:AAAA".to_owned(),
            RevocationReason::Lost as i32,
            ErrorReason::MalformedCode,
        ),
    ];
    for (code, reason, expected) in bad_revokes {
        let status = office
            .revoke_voucher(RevokeVoucherRequest { code, reason })
            .await
            .unwrap_err();
        assert_eq!(reason_of(&status), Some(expected), "{status:?}");
    }
    let status = office
        .show_voucher(ShowVoucherRequest {
            code: schein_proto::ShortCode::new("DRS", schein_proto::Serial::random())
                .unwrap()
                .to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::UnknownVoucher));
    let status = office
        .list_vouchers(ListVouchersRequest {
            page_token: "not a token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));

    // Revoking twice: the second is refused, the first stands.
    let revoke = RevokeVoucherRequest {
        code: voucher.short_code.clone(),
        reason: RevocationReason::Lost as i32,
    };
    office.revoke_voucher(revoke.clone()).await.unwrap();
    let status = office.revoke_voucher(revoke).await.unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::AlreadyRevoked));

    assert_eq!(
        count_vouchers(&mut office).await,
        1,
        "no refused request stored anything"
    );

    let mut provider = saxony.provider("dresden", "praxis").await.unwrap();
    let status = provider
        .verify_voucher(VerifyVoucherRequest {
            code: "x".repeat(5000),
            for_scope: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));
    let status = provider
        .verify_voucher(VerifyVoucherRequest {
            code: voucher.short_code.clone(),
            for_scope: 1234,
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&status), Some(ErrorReason::InvalidArgument));
    saxony.shutdown().await.unwrap();
}
