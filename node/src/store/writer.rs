//! The store's writer: the frequent changes — a voucher issued, a settlement decided, a claim
//! stored, a receipt recorded — queue here, and a thread of their own applies everything that is
//! waiting in one sled transaction and makes it durable with one flush before it answers any of
//! them (transaction-level group commit). A batch of claims thus costs one transaction, one
//! flush, and each report counter it touches written once (sled keeps a transaction's writes
//! until it commits). The changes are applied in the order they queued, so the issuer's cap holds
//! exactly whatever the concurrency.
//!
//! A change that is refused (a claim id reused, a receipt for no claim) aborts the batch's
//! transaction; the batch is then applied change by change, so that each gets its own answer
//! and no change is half done.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use schein_proto::Day;
use schein_proto::v1::{ClaimRecord, Receipt, SettlementRecord};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use tokio::sync::oneshot;

use super::claims::{ClaimKey, NewClaim};
use super::{StoreError, corrupt};
use crate::domain::settle::Ceilings;

/// Seals a receipt with the issuer's key.
pub(super) type Signer = Arc<dyn Fn(&Receipt) -> Vec<u8> + Send + Sync>;

/// Most changes applied in one transaction.
const MAX_BATCH: usize = 256;

/// The trees of the store inside one transaction.
pub(super) struct Tx<'a> {
    pub(super) issued: &'a TransactionalTree,
    pub(super) state: &'a TransactionalTree,
    pub(super) order: &'a TransactionalTree,
    pub(super) settlements: &'a TransactionalTree,
    pub(super) claims: &'a TransactionalTree,
    pub(super) claim_order: &'a TransactionalTree,
    pub(super) outbox: &'a TransactionalTree,
    pub(super) claim_items: &'a TransactionalTree,
    pub(super) ledger: &'a TransactionalTree,
    pub(super) meta: &'a TransactionalTree,
    pub(super) aggregates: &'a TransactionalTree,
    pub(super) aggregate_seen: &'a TransactionalTree,
    pub(super) outbox_due: &'a TransactionalTree,
    pub(super) clearing_index: &'a TransactionalTree,
}

impl<'a> Tx<'a> {
    /// The views of the store's trees, in the order of the fields.
    fn new(views: &'a [TransactionalTree]) -> Self {
        Self {
            issued: &views[0],
            state: &views[1],
            order: &views[2],
            settlements: &views[3],
            claims: &views[4],
            claim_order: &views[5],
            outbox: &views[6],
            claim_items: &views[7],
            ledger: &views[8],
            meta: &views[9],
            aggregates: &views[10],
            aggregate_seen: &views[11],
            outbox_due: &views[12],
            clearing_index: &views[13],
        }
    }
}

/// A change the writer applies.
pub(super) enum Change {
    /// A newly signed voucher (see [`super::Store::issue`]).
    Issue {
        serial: schein_proto::Serial,
        issued: Vec<u8>,
        sequence: u64,
        month: i32,
        valid_from: Day,
        valid_until: Day,
        today: Day,
    },
    /// A settlement record to decide on as issuer (see [`super::Store::settle`]).
    Settle {
        issuer: String,
        record: SettlementRecord,
        category: schein_proto::v1::Category,
        today: Day,
        ceilings: Ceilings,
        sign: Signer,
    },
    /// A claim on one of this node's own vouchers, decided and its receipt recorded in the
    /// same transaction (see [`super::Store::settle_own`]).
    SettleOwn {
        issuer: String,
        record: SettlementRecord,
        category: schein_proto::v1::Category,
        today: Day,
        ceilings: Ceilings,
        sign: Signer,
        claim: super::OwnClaim,
    },
    /// A receipt of this node recovered from a peer after a restore (see
    /// [`super::Store::recover`]).
    Recover {
        issuer: String,
        recovered: Box<super::Recovered>,
    },
    /// A provider's claim (see [`super::Store::submit_claim`]).
    Submit { claim: Box<NewClaim>, sequence: u64 },
    /// An issuer's receipt for a claim (see [`super::Store::finish_claim`]).
    Finish {
        key: ClaimKey,
        signed_receipt: Vec<u8>,
        receipt: Receipt,
        message: String,
    },
}

/// What a change came to.
pub(super) enum Done {
    Issued,
    Settled(Vec<u8>),
    SettledOwn(Vec<u8>, ClaimRecord),
    Submitted(ClaimRecord, bool),
    Finished(ClaimRecord),
    Recovered(super::Placement),
}

impl Change {
    fn apply(&self, tx: &Tx<'_>) -> Result<Done, ConflictableTransactionError<StoreError>> {
        match self {
            Change::Issue {
                serial,
                issued,
                sequence,
                month,
                valid_from,
                valid_until,
                today,
            } => super::issue_in(
                tx,
                *serial,
                issued,
                *sequence,
                *month,
                (*valid_from, *valid_until),
                *today,
            )
            .map(|()| Done::Issued),
            Change::Settle {
                issuer,
                record,
                category,
                today,
                ceilings,
                sign,
            } => {
                super::settle::settle_in(tx, issuer, record, *category, *today, *ceilings, &**sign)
                    .map(Done::Settled)
            }
            Change::SettleOwn {
                issuer,
                record,
                category,
                today,
                ceilings,
                sign,
                claim,
            } => {
                let signed_receipt = super::settle::settle_in(
                    tx, issuer, record, *category, *today, *ceilings, &**sign,
                )?;
                let receipt: Receipt = schein_proto::signed::peek(&signed_receipt)
                    .map_err(|_| ConflictableTransactionError::Abort(corrupt("an own receipt")))?;
                let message = (claim.describe)(&receipt);
                let claim =
                    super::claims::finish_in(tx, &claim.key, &signed_receipt, &receipt, &message)?;
                Ok(Done::SettledOwn(signed_receipt, claim))
            }
            Change::Recover { issuer, recovered } => {
                super::recovery::recover_in(tx, issuer, recovered).map(Done::Recovered)
            }
            Change::Submit { claim, sequence } => super::claims::submit_in(tx, claim, *sequence)
                .map(|(record, created)| Done::Submitted(record, created)),
            Change::Finish {
                key,
                signed_receipt,
                receipt,
                message,
            } => super::claims::finish_in(tx, key, signed_receipt, receipt, message)
                .map(Done::Finished),
        }
    }
}

struct Queued {
    change: Change,
    answer: oneshot::Sender<Result<Done, StoreError>>,
}

/// The queue and the thread that empties it.
pub(super) struct Writer {
    queue: Mutex<Option<std::sync::mpsc::Sender<Queued>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer of `db`'s `trees` (in the order of [`Tx`]); `durable`: flush after
    /// every batch.
    pub(super) fn start(
        db: sled::Db,
        trees: Vec<sled::Tree>,
        durable: bool,
        flush_seconds: super::FlushSeconds,
        quiet: Arc<std::sync::RwLock<()>>,
    ) -> Result<Self, StoreError> {
        let (queue, queued) = std::sync::mpsc::channel::<Queued>();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Ok(first) = queued.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queued.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let results = {
                        let _quiet = quiet.read().unwrap_or_else(PoisonError::into_inner);
                        apply_batch(&trees, &batch)
                    };
                    // Nothing is answered before it is on disk.
                    let flushed = if durable {
                        let started = std::time::Instant::now();
                        let flushed = db.flush().map(drop);
                        flush_seconds.observe(started.elapsed().as_secs_f64());
                        flushed
                    } else {
                        Ok(())
                    };
                    for (queued, result) in batch.into_iter().zip(results) {
                        let result = match (&flushed, result) {
                            (Err(error), Ok(_)) => Err(StoreError::Sled(error.clone())),
                            (_, result) => result,
                        };
                        let _ = queued.answer.send(result);
                    }
                }
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start the store's writer: {e}")))?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether the thread still runs (it ends only when the store is dropped, or if it
    /// panicked): the node's readiness.
    pub(super) fn alive(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    /// Queues `change` and waits until it is applied and on disk.
    pub(super) async fn apply(&self, change: Change) -> Result<Done, StoreError> {
        let (answer, answered) = oneshot::channel();
        {
            let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let queue = queue
                .as_ref()
                .ok_or_else(|| corrupt("the store's writer has stopped"))?;
            queue
                .send(Queued { change, answer })
                .map_err(|_| corrupt("the store's writer has stopped"))?;
        }
        answered
            .await
            .map_err(|_| corrupt("the store's writer stopped before it answered"))?
    }
}

impl Drop for Writer {
    /// Lets the thread finish what is queued and end, so that the database is closed when the
    /// store is dropped (a node restarted in the same process opens it again at once).
    fn drop(&mut self) {
        drop(
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }
}

/// Applies `batch` in one transaction; if a change is refused, each change in one of its own.
fn apply_batch(trees: &[sled::Tree], batch: &[Queued]) -> Vec<Result<Done, StoreError>> {
    let together = trees.transaction(|views| {
        let tx = Tx::new(views);
        batch
            .iter()
            .map(|queued| queued.change.apply(&tx))
            .collect::<Result<Vec<_>, _>>()
    });
    match together {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(TransactionError::Abort(error)) if batch.len() == 1 => vec![Err(error)],
        Err(TransactionError::Abort(_)) => batch
            .iter()
            .map(|queued| {
                trees
                    .transaction(|views| queued.change.apply(&Tx::new(views)))
                    .map_err(StoreError::from)
            })
            .collect(),
        Err(TransactionError::Storage(error)) => batch
            .iter()
            .map(|_| Err(StoreError::Sled(error.clone())))
            .collect(),
    }
}
