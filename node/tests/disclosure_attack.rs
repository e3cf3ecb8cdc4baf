//! Privacy rule 4, attacked. Random workloads of a year (vouchers issued, claims settled by
//! category and redeeming city, claims rejected by reason) are counted as the store counts
//! them, every report of the year is composed as it leaves the node (12 months, 4 quarters,
//! the year), and an attacker who knows how published cells relate solves for the hidden ones
//! with the module in `attacker/`, which shares no code with the node's disclosure control:
//!
//! - no published cell is built from 1 to 4 vouchers;
//! - no hidden non-empty cell is fixed by the published equations (exact elimination), for
//!   claims and amounts alike;
//! - no hidden cell built from 1 to 4 vouchers can be proved to hold fewer than 5 claims: the
//!   largest number the equations and non-negativity allow it is at least 5 (simplex).
//!
//! The equations: in every report, settled = Σ categories = Σ cities, in claims and amounts;
//! the quarters' spend and the year's spend are the settled cells of those periods (and the
//! forecast gives the year's away); for every measure, months add up to quarters and quarters
//! to the year. Two reports of adjacent periods (a month and its quarter, Q3 and Q4) give a
//! subset of these equations, which can only fix less.

mod attacker;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use schein_node::domain::report::{AsOf, Heading, compose};
use schein_node::store::{Aggregate, StoreError};
use schein_proto::Day;
use schein_proto::period::Period;
use schein_proto::v1::{NodeReport, RejectReason, ReportCell};

use attacker::{Q, System};

const YEAR: i32 = 2026;
const KINDS: [&str; 3] = ["treatment", "medication", "emergency"];
/// The members, and a city that left the roster but where vouchers were used.
const CITIES: [&str; 4] = ["leipzig", "dresden", "chemnitz", "zwickau"];
const MEMBERS: usize = 3;
const REASONS: [RejectReason; 6] = [
    RejectReason::UnknownVoucher,
    RejectReason::Revoked,
    RejectReason::Expired,
    RejectReason::DeadlinePassed,
    RejectReason::OverCap,
    RejectReason::OutOfScope,
];

#[derive(Clone, Debug)]
enum What {
    Issued,
    Settled {
        kind: usize,
        city: usize,
        amount: i64,
    },
    Rejected {
        reason: usize,
    },
}

#[derive(Clone, Debug)]
struct Event {
    voucher: u32,
    month: u8,
    what: What,
}

/// A cell as the store keeps it: claims, distinct vouchers, amount.
#[derive(Clone, Debug, Default)]
struct Truth {
    count: u64,
    vouchers: BTreeSet<u32>,
    amount: i64,
}

/// The true cells by measure (`settled`, `category/treatment`, …) and period.
type Cells = BTreeMap<(String, Period), Truth>;

fn periods() -> Vec<Period> {
    let mut all: Vec<Period> = (1..=12).map(|m| Period::Month(YEAR, m)).collect();
    all.extend(Period::quarters(YEAR));
    all.push(Period::Year(YEAR));
    all
}

fn count(events: &[Event]) -> Cells {
    let mut cells = Cells::new();
    for e in events {
        let (measures, amount) = match &e.what {
            What::Issued => (vec!["issued".to_owned()], 0),
            What::Settled { kind, city, amount } => (
                vec![
                    "settled".to_owned(),
                    format!("category/{}", KINDS[*kind]),
                    format!("flow/{}", CITIES[*city]),
                ],
                *amount,
            ),
            What::Rejected { reason } => (
                vec![format!("rejected/{}", REASONS[*reason].as_str_name())],
                0,
            ),
        };
        for period in Period::containing(YEAR * 100 + i32::from(e.month)) {
            for measure in &measures {
                let cell = cells.entry((measure.clone(), period)).or_default();
                cell.count += 1;
                cell.vouchers.insert(e.voucher);
                cell.amount += amount;
            }
        }
    }
    cells
}

/// The flow columns a node shows: its members, and any other city its vouchers were used in.
fn cities(cells: &Cells) -> Vec<String> {
    CITIES
        .iter()
        .enumerate()
        .filter(|(i, city)| {
            *i < MEMBERS || cells.contains_key(&(format!("flow/{city}"), Period::Year(YEAR)))
        })
        .map(|(_, c)| (*c).to_owned())
        .collect()
}

/// Every report of the year, as the node composes it from these cells.
fn reports(cells: &Cells, cities: &[String]) -> Vec<NodeReport> {
    let by_name: BTreeMap<String, Aggregate> = cells
        .iter()
        .map(|((measure, period), t)| {
            let (metric, dim) = match measure.split_once('/') {
                Some((m, d)) => (m, Some(d)),
                None => (measure.as_str(), None),
            };
            (
                match dim {
                    Some(dim) => format!("{metric}/{period}/{dim}"),
                    None => format!("{metric}/{period}"),
                },
                Aggregate {
                    count: t.count,
                    vouchers: t.vouchers.len() as u64,
                    amount_cents: t.amount,
                },
            )
        })
        .collect();
    let heading = Heading {
        node: "leipzig".into(),
        node_name: "Leipzig".into(),
        annual_budget_cents: 20_400_000,
    };
    let today = Day::parse("2026-12-31").expect("a day");
    periods()
        .into_iter()
        .map(|p| {
            compose(&heading, cities, p, AsOf::Now(today), |name| {
                Ok::<_, StoreError>(by_name.get(name).copied().unwrap_or_default())
            })
            .expect("a report")
        })
        .collect()
}

/// What the attacker reads: for each (measure, period), the published (claims, amount).
struct Published {
    measures: Vec<String>,
    periods: Vec<Period>,
    known: BTreeMap<usize, (i64, i64)>,
}

impl Published {
    fn var(&self, measure: &str, period: Period) -> usize {
        let m = self
            .measures
            .iter()
            .position(|x| x == measure)
            .expect("a measure");
        let p = self
            .periods
            .iter()
            .position(|x| *x == period)
            .expect("a period");
        m * self.periods.len() + p
    }

    fn name(&self, var: usize) -> (&str, Period) {
        let n = self.periods.len();
        (&self.measures[var / n], self.periods[var % n])
    }

    /// Reads every cell of `reports`, checking each published one against the truth.
    fn read(reports: &[NodeReport], cells: &Cells) -> Self {
        let first = &reports[0];
        let mut measures = vec!["settled".to_owned(), "issued".to_owned()];
        measures.extend(
            first
                .categories
                .iter()
                .map(|c| format!("category/{}", c.category)),
        );
        measures.extend(first.flows.iter().map(|f| format!("flow/{}", f.redeemer)));
        measures.extend(
            first
                .rejected
                .iter()
                .map(|r| format!("rejected/{}", r.reason().as_str_name())),
        );
        let mut published = Self {
            measures,
            periods: periods(),
            known: BTreeMap::new(),
        };
        for r in reports {
            let period = Period::parse(&r.period).expect("a period");
            let mut see = |measure: &str, p: Period, cell: &Option<ReportCell>| {
                let cell = cell.as_ref().expect("every cell is there");
                if cell.suppressed {
                    return;
                }
                let truth = cells
                    .get(&(measure.to_owned(), p))
                    .cloned()
                    .unwrap_or_default();
                let vouchers = truth.vouchers.len() as u64;
                assert!(
                    !(1..5).contains(&vouchers),
                    "{measure} {p} published from {vouchers} vouchers"
                );
                assert_eq!(
                    (cell.count, cell.vouchers, cell.amount_cents),
                    (truth.count, vouchers, truth.amount),
                    "{measure} {p} as published"
                );
                let var = published.var(measure, p);
                published
                    .known
                    .insert(var, (truth.count as i64, truth.amount));
            };
            see("settled", period, &r.settled);
            see("issued", period, &r.issued);
            for c in &r.categories {
                see(&format!("category/{}", c.category), period, &c.cell);
            }
            for f in &r.flows {
                see(&format!("flow/{}", f.redeemer), period, &f.cell);
            }
            for c in &r.rejected {
                see(
                    &format!("rejected/{}", c.reason().as_str_name()),
                    period,
                    &c.cell,
                );
            }
            see("settled", Period::Year(YEAR), &r.spent_this_year);
            for q in &r.quarters {
                see(
                    "settled",
                    Period::parse(&q.period).expect("a quarter"),
                    &q.cell,
                );
            }
            let claimed = r.claimed_vouchers.as_ref().expect("claimed vouchers");
            let settled = r.settled.as_ref().expect("settled");
            assert_eq!(claimed.suppressed, settled.suppressed, "{period}");
            // The forecast is the year's spend times a known factor.
            let spent = r.spent_this_year.as_ref().expect("spent");
            assert!(
                r.forecast_cents.is_none() || !spent.suppressed,
                "{period}: a forecast of a suppressed spend"
            );
        }
        published
    }

    /// Every published relation, as coefficients over all cells (right side 0).
    fn relations(&self) -> Vec<Vec<(usize, i64)>> {
        let mut relations = Vec::new();
        let group = |prefix: &str| -> Vec<&String> {
            self.measures
                .iter()
                .filter(|m| m.starts_with(prefix))
                .collect()
        };
        for &p in &self.periods {
            for prefix in ["category/", "flow/"] {
                let mut row = vec![(self.var("settled", p), 1)];
                row.extend(group(prefix).iter().map(|m| (self.var(m, p), -1)));
                relations.push(row);
            }
        }
        for m in &self.measures {
            for q in 1..=4u8 {
                let mut row = vec![(self.var(m, Period::Quarter(YEAR, q)), 1)];
                row.extend(
                    (1..=3).map(|i| (self.var(m, Period::Month(YEAR, (q - 1) * 3 + i)), -1)),
                );
                relations.push(row);
            }
            let mut row = vec![(self.var(m, Period::Year(YEAR)), 1)];
            row.extend(Period::quarters(YEAR).map(|q| (self.var(m, q), -1)));
            relations.push(row);
        }
        relations
    }

    /// The relations with the published cells put in, over the hidden cells (claims or
    /// amounts), and which cell each unknown is.
    fn system(&self, amounts: bool) -> (System, Vec<usize>) {
        let hidden: Vec<usize> = (0..self.measures.len() * self.periods.len())
            .filter(|v| !self.known.contains_key(v))
            .collect();
        let index: BTreeMap<usize, usize> =
            hidden.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let mut rows = Vec::new();
        for relation in self.relations() {
            let mut coefficients = vec![Q::ZERO; hidden.len()];
            let mut right = Q::ZERO;
            for (var, c) in relation {
                match self.known.get(&var) {
                    Some(&(claims, amount)) => {
                        right = right - Q::int(c) * Q::int(if amounts { amount } else { claims })
                    }
                    None => coefficients[index[&var]] = coefficients[index[&var]] + Q::int(c),
                }
            }
            if coefficients.iter().all(|c| c.is_zero()) {
                assert!(right.is_zero(), "published cells that do not add up");
                continue;
            }
            rows.push((coefficients, right));
        }
        (
            System {
                unknowns: hidden.len(),
                rows,
            },
            hidden,
        )
    }
}

/// The attack: see the file's comment. Panics with what it found.
fn attack(events: &[Event]) {
    let cells = count(events);
    let cities = cities(&cells);
    let reports = reports(&cells, &cities);
    let published = Published::read(&reports, &cells);
    let truth = |var: usize| {
        let (measure, period) = published.name(var);
        cells
            .get(&(measure.to_owned(), period))
            .cloned()
            .unwrap_or_default()
    };
    for amounts in [false, true] {
        let (system, hidden) = published.system(amounts);
        for (u, fixed) in system.determined().into_iter().enumerate() {
            let t = truth(hidden[u]);
            let value = if amounts { t.amount } else { t.count as i64 };
            assert!(
                !fixed || value == 0,
                "hidden {:?} is fixed by the published cells ({} {})",
                published.name(hidden[u]),
                value,
                if amounts { "cents" } else { "claims" }
            );
        }
        if amounts {
            continue;
        }
        let feasible = system.feasible();
        for (u, &var) in hidden.iter().enumerate() {
            let vouchers = truth(var).vouchers.len();
            if !(1..5).contains(&vouchers) {
                continue;
            }
            if let Some(most) = feasible.maximum(u) {
                assert!(
                    most >= Q::int(5),
                    "hidden {:?} from {vouchers} vouchers is proved to hold at most {most:?} claims",
                    published.name(var)
                );
            }
        }
    }
}

/// Where a claim goes: (month, kind, city).
type Place = (u8, usize, usize);

/// Workloads of up to 40 vouchers in a random run of months, kinds and cities. Most claims go
/// to a few places the workload picks first, so that cells are large, empty or small in every
/// mix (a group all published, a total hidden only in some months); the rest go anywhere.
fn workload() -> impl Strategy<Value = Vec<Event>> {
    (
        0usize..40,
        1u8..=12,
        prop_oneof![3 => 0u8..3, 1 => 3u8..12],
        1usize..=3,
        1usize..=KINDS.len(),
        1usize..=CITIES.len(),
    )
        .prop_flat_map(|(vouchers, first, span, claims, kinds, cities)| {
            let last = (first + span).min(12);
            let place = (first..=last, 0..kinds, 0..cities);
            let places = proptest::collection::vec(place.clone(), 1..=4);
            let claim = (
                prop_oneof![4 => (0usize..4).prop_map(Some), 1 => Just(None)],
                place,
                1i64..100_000,
            );
            let voucher = (
                first..=last,
                proptest::collection::vec(claim, 0..=claims),
                proptest::option::weighted(0.2, (first..=last, 0usize..REASONS.len())),
            );
            (places, proptest::collection::vec(voucher, vouchers)).prop_map(|(places, vouchers)| {
                let mut events = Vec::new();
                for (v, (issued, claims, rejected)) in vouchers.into_iter().enumerate() {
                    let voucher = v as u32;
                    events.push(Event {
                        voucher,
                        month: issued,
                        what: What::Issued,
                    });
                    for (picked, anywhere, amount) in claims {
                        let (month, kind, city): Place =
                            picked.map_or(anywhere, |i| places[i % places.len()]);
                        events.push(Event {
                            voucher,
                            month,
                            what: What::Settled { kind, city, amount },
                        });
                    }
                    if let Some((month, reason)) = rejected {
                        events.push(Event {
                            voucher,
                            month,
                            what: What::Rejected { reason },
                        });
                    }
                }
                events
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// One claim per voucher gives cells whose claims are their vouchers (the simplex bound
    /// speaks of vouchers then); up to three per voucher tests the rest.
    #[test]
    fn no_hidden_cell_can_be_solved_for(events in workload()) {
        attack(&events);
    }
}

/// Settled claims of one month: `(vouchers, kind, city, amount of each)`.
fn month_of(month: u8, groups: &[(u32, usize, usize, i64)]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut voucher = 0;
    for &(n, kind, city, amount) in groups {
        for _ in 0..n {
            events.push(Event {
                voucher,
                month,
                what: What::Settled { kind, city, amount },
            });
            voucher += 1;
        }
    }
    events
}

/// From use: medication and emergency of one voucher each, both suppressed, were computed as
/// "settled − treatment" (EUR 187.80 together).
#[test]
fn two_small_categories_are_not_their_total_minus_the_rest() {
    let events = month_of(
        3,
        &[(10, 0, 0, 12_000), (1, 1, 0, 10_000), (1, 2, 0, 8_780)],
    );
    let cells = count(&events);
    let march = &reports(&cells, &cities(&cells))[2];
    let visible = |c: &Option<ReportCell>| c.as_ref().is_some_and(|c| !c.suppressed);
    assert!(
        !(visible(&march.settled) && visible(&march.categories[0].cell)),
        "settled − treatment is the sum of the two small cells"
    );
    attack(&events);
}

/// A hidden total is the sum of a group whose non-empty parts are all published.
#[test]
fn a_hidden_total_is_not_the_sum_of_a_published_group() {
    // Three vouchers in all (the total is small); all treatment, in two cities.
    let events = month_of(5, &[(2, 0, 1, 5_000), (1, 0, 2, 7_000)]);
    attack(&events);
    // Six vouchers, all used in Leipzig: two small categories and no category to partner them,
    // so the total goes, and then Leipzig's flow, which is the total.
    let events = month_of(3, &[(4, 0, 0, 5_000), (2, 1, 0, 7_000)]);
    let cells = count(&events);
    let march = &reports(&cells, &cities(&cells))[2];
    assert!(march.settled.as_ref().is_some_and(|c| c.suppressed));
    assert!(march.flows[0].cell.as_ref().is_some_and(|c| c.suppressed));
    attack(&events);
    // Many vouchers, but the total is hidden year-wide because of a small May.
    let mut events = month_of(6, &[(20, 0, 0, 1_000), (8, 1, 1, 2_000)]);
    events.extend(month_of(5, &[(2, 0, 1, 5_000)]).into_iter().map(|mut e| {
        e.voucher += 100;
        e
    }));
    attack(&events);
}
