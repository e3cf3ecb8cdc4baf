//! Privacy rule 3: what the issuer receives and stores of a claim.

use schein_tests::{Saxony, issue};

/// Privacy rule 3: the issuer receives and stores only claim id, serial, amount, category,
/// service month and redeeming node. Reads everything Leipzig stored after Dresden's claims.
#[tokio::test]
async fn the_issuer_learns_nothing_of_provider_items_or_day() {
    use schein_proto::v1::{Category, ClaimState, Receipt};
    use schein_tests::claim_request;

    let mut saxony = Saxony::start().await.unwrap();
    let mut office = saxony.office("leipzig").await.unwrap();
    let voucher = issue(&mut office, &[]).await.unwrap();
    let mut provider = saxony.provider("dresden", "praxis-geheim").await.unwrap();
    let claim = provider
        .submit_claim(claim_request(
            "visit-geheim-1",
            &voucher.full_code,
            &[("GOAE-1", 1, 466), ("GOAE-250", 1, 233)],
            Category::Treatment,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claim.state(), ClaimState::Settled, "{}", claim.message);
    saxony.federation.stop("leipzig").await.unwrap();

    let data = saxony.federation.node("leipzig").unwrap().dir.join("data");
    let db = sled::open(&data).unwrap();
    let mut everything = Vec::new();
    let mut receipts = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            everything.extend_from_slice(&key);
            everything.extend_from_slice(&value);
            if name.as_ref() == b"settlements" {
                // The stored value is the record's hash, then the signed receipt.
                receipts.push(schein_proto::signed::peek::<Receipt>(&value[32..]).unwrap());
            }
        }
    }
    drop(db);
    for secret in [
        "praxis-geheim",
        "visit-geheim-1",
        "GOAE-1",
        "GOAE-250",
        "dresden/",
    ] {
        assert!(
            !everything
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "Leipzig stored '{secret}'"
        );
    }
    assert_eq!(receipts.len(), 1);
    let receipt = &receipts[0];
    let month = schein_proto::Day::today().month().unwrap();
    assert_eq!(receipt.service_month, month, "the month, not the day");
    assert_eq!(
        receipt.decided_month, month,
        "decided in a month, not on a day"
    );
    assert_eq!(
        (receipt.amount_cents, receipt.redeemer.as_str()),
        (699, "dresden")
    );
    // The claim id Leipzig knows is random, not derived from the provider or its claim id.
    assert_eq!(receipt.claim_id.len(), 20);
    saxony.shutdown().await.unwrap();
}
