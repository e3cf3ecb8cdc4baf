//! Clearing at full scale: a pair of nodes with 10,500 settled claims in one quarter clears
//! over real mTLS with real sled. The claims are written into both stores through the store's
//! own methods while the two nodes are stopped (10,500 claims through the RPCs would take
//! minutes here); the close itself is the real one: Dresden's office closes the quarter,
//! Leipzig answers with the first page of its signed statement, Dresden asks for the rest page by
//! page and compares each with its own books as it comes. More than one page: the statement's
//! paging is part of what is tested. A claim whose amount Leipzig states differently is found.

use prost::Message;
use schein_node::local::books::{self, cents, claim_id};
use schein_proto::v1::{ClearingRequest, ClearingState};
use schein_tests::Saxony;

const CLAIMS: usize = 10_500;
const PERIOD: &str = "2025-Q1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_with_ten_thousand_claims_in_one_quarter_clears() {
    let mut saxony = Saxony::start().await.expect("Saxony starts");
    let key = saxony.signing_key("leipzig").expect("Leipzig's key");
    for city in ["leipzig", "dresden"] {
        saxony.federation.stop(city).await.expect("stops");
    }
    let data = |city: &str| {
        saxony
            .federation
            .node(city)
            .expect("the city")
            .dir
            .join("data")
    };
    books::settled_pair(&data("leipzig"), &data("dresden"), &key, CLAIMS)
        .await
        .expect("the books are written");
    // One claim that Leipzig's books hold with another amount: the close must name it.
    let differing = claim_id(7_777);
    {
        let db = sled::open(data("leipzig")).expect("Leipzig's store");
        let index = db.open_tree("clearing_index").expect("the clearing index");
        let mut entry = b"Ldresden".to_vec();
        entry.push(0);
        entry.extend_from_slice(PERIOD.as_bytes());
        entry.push(0);
        entry.extend_from_slice(differing.as_bytes());
        index
            .insert(entry, &(cents(7_777) + 1).to_be_bytes()[..])
            .expect("changed");
        db.flush().expect("flushed");
    }
    for city in ["leipzig", "dresden"] {
        saxony.federation.restart(city).await.expect("starts again");
    }

    let mut office = saxony.office("dresden").await.expect("Dresden's office");
    let result = office
        .close_clearing(ClearingRequest {
            period: PERIOD.into(),
        })
        .await
        .expect("the close is answered")
        .into_inner();
    let pair = result
        .pairs
        .iter()
        .find(|p| p.peer == "leipzig")
        .expect("the pair with Leipzig");
    let expected: i64 = (0..CLAIMS).map(cents).sum();
    assert!(pair.reached && pair.closed, "{pair:?}");
    assert_eq!(pair.receivables_cents, expected, "Dresden's own books");
    assert_eq!(
        pair.peer_liabilities_cents,
        expected + 1,
        "every page of Leipzig's statement was read"
    );
    assert_eq!(pair.differing_claim_ids, [differing], "{}", pair.note);
    assert!(!pair.agreed);
    assert!(
        result
            .pairs
            .iter()
            .filter(|p| p.peer != "leipzig")
            .all(|p| p.reached && p.agreed),
        "{result:?}"
    );
    assert_eq!(result.state(), ClearingState::Closed, "{}", result.message);
    assert!(
        result.encoded_len() < 64 * 1024,
        "the result names claims, not all of them"
    );
    saxony.shutdown().await.expect("shut down");
}
