//! An attacker who knows how a report's published cells relate and solves for the hidden ones,
//! written without the node's disclosure code: exact rational arithmetic, Gauss–Jordan
//! elimination (which hidden cells the published equations determine) and a simplex (the
//! largest value the equations and non-negativity allow a hidden cell).

use std::cmp::Ordering;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// An exact fraction; the denominator is positive and shares no factor with the numerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Q {
    n: i128,
    d: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Q {
    pub(crate) const ZERO: Q = Q { n: 0, d: 1 };

    pub(crate) fn int(n: i64) -> Q {
        Q {
            n: i128::from(n),
            d: 1,
        }
    }

    fn new(n: i128, d: i128) -> Q {
        assert!(d != 0, "division by zero");
        let g = gcd(n, d).max(1);
        let sign = if d < 0 { -1 } else { 1 };
        Q {
            n: sign * n / g,
            d: sign * d / g,
        }
    }

    fn reciprocal(self) -> Q {
        Q::new(self.d, self.n)
    }

    pub(crate) fn is_zero(self) -> bool {
        self.n == 0
    }

    pub(crate) fn is_positive(self) -> bool {
        self.n > 0
    }
}

fn checked(v: Option<i128>) -> i128 {
    v.expect("the attacker's arithmetic overflowed")
}

impl Add for Q {
    type Output = Q;
    fn add(self, o: Q) -> Q {
        let g = gcd(self.d, o.d);
        let d = checked((self.d / g).checked_mul(o.d));
        let n = checked(
            checked(self.n.checked_mul(o.d / g)).checked_add(checked(o.n.checked_mul(self.d / g))),
        );
        Q::new(n, d)
    }
}

impl Neg for Q {
    type Output = Q;
    fn neg(self) -> Q {
        Q {
            n: -self.n,
            d: self.d,
        }
    }
}

impl Sub for Q {
    type Output = Q;
    fn sub(self, o: Q) -> Q {
        self + (-o)
    }
}

impl Mul for Q {
    type Output = Q;
    fn mul(self, o: Q) -> Q {
        if self.is_zero() || o.is_zero() {
            return Q::ZERO;
        }
        let g1 = gcd(self.n, o.d);
        let g2 = gcd(o.n, self.d);
        Q::new(
            checked((self.n / g1).checked_mul(o.n / g2)),
            checked((self.d / g2).checked_mul(o.d / g1)),
        )
    }
}

impl Div for Q {
    type Output = Q;
    fn div(self, o: Q) -> Q {
        self.mul(o.reciprocal())
    }
}

impl PartialOrd for Q {
    fn partial_cmp(&self, o: &Q) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Q {
    fn cmp(&self, o: &Q) -> Ordering {
        checked(self.n.checked_mul(o.d)).cmp(&checked(o.n.checked_mul(self.d)))
    }
}

/// Linear equations `Σ coefficient · x = right side` over unknowns `0..unknowns`.
#[derive(Clone, Debug)]
pub(crate) struct System {
    pub(crate) unknowns: usize,
    pub(crate) rows: Vec<(Vec<Q>, Q)>,
}

impl System {
    /// The unknowns whose value the equations fix, by Gauss–Jordan elimination: those that are
    /// alone in a row of the reduced row echelon form. Panics if the equations contradict each
    /// other (the published cells would not be the true ones).
    pub(crate) fn determined(&self) -> Vec<bool> {
        let mut rows = self.rows.clone();
        let mut pivot_row = 0;
        let mut pivots = Vec::new();
        for col in 0..self.unknowns {
            let Some(found) = (pivot_row..rows.len()).find(|&r| !rows[r].0[col].is_zero()) else {
                continue;
            };
            rows.swap(pivot_row, found);
            let p = rows[pivot_row].0[col];
            let (coefficients, right) = &mut rows[pivot_row];
            for c in coefficients.iter_mut() {
                *c = *c / p;
            }
            *right = *right / p;
            let pivot = rows[pivot_row].clone();
            for (r, row) in rows.iter_mut().enumerate() {
                let factor = row.0[col];
                if r == pivot_row || factor.is_zero() {
                    continue;
                }
                for (c, v) in row.0.iter_mut().zip(&pivot.0) {
                    *c = *c - factor * *v;
                }
                row.1 = row.1 - factor * pivot.1;
            }
            pivots.push(col);
            pivot_row += 1;
        }
        for (coefficients, right) in &rows[pivot_row..] {
            assert!(coefficients.iter().all(|c| c.is_zero()));
            assert!(right.is_zero(), "the published cells contradict each other");
        }
        let mut determined = vec![false; self.unknowns];
        for (row, &col) in rows.iter().zip(&pivots) {
            if row.0.iter().filter(|c| !c.is_zero()).count() == 1 {
                determined[col] = true;
            }
        }
        determined
    }

    /// A simplex tableau of these equations with a feasible basis (phase 1 done), for
    /// [`Feasible::maximum`]. Panics if no non-negative solution exists.
    pub(crate) fn feasible(&self) -> Feasible {
        let n = self.unknowns;
        let m = self.rows.len();
        // Right sides made non-negative; one artificial unknown per row.
        let mut a: Vec<Vec<Q>> = Vec::with_capacity(m);
        let mut b: Vec<Q> = Vec::with_capacity(m);
        for (i, (coefficients, right)) in self.rows.iter().enumerate() {
            let flip = right.n < 0;
            let mut row: Vec<Q> = coefficients
                .iter()
                .map(|c| if flip { -*c } else { *c })
                .collect();
            row.extend((0..m).map(|j| if j == i { Q::int(1) } else { Q::ZERO }));
            a.push(row);
            b.push(if flip { -*right } else { *right });
        }
        let mut t = Feasible {
            a,
            b,
            basis: (n..n + m).collect(),
            unknowns: n,
        };
        let mut cost = vec![Q::ZERO; n + m];
        for c in &mut cost[n..] {
            *c = Q::int(-1);
        }
        let best = t
            .maximise(&cost, n + m)
            .expect("phase 1 is bounded by zero");
        assert!(best.is_zero(), "the published cells admit no solution");
        // Artificials left in the basis (at zero): pivot them out, or drop their row if it
        // has nothing else (a redundant equation).
        let mut i = 0;
        while i < t.b.len() {
            if t.basis[i] >= n {
                match (0..n).find(|&j| !t.a[i][j].is_zero()) {
                    Some(j) => t.pivot(i, j),
                    None => {
                        t.a.remove(i);
                        t.b.remove(i);
                        t.basis.remove(i);
                        continue;
                    }
                }
            }
            i += 1;
        }
        t
    }
}

/// A tableau in canonical form for a feasible basis.
#[derive(Clone, Debug)]
pub(crate) struct Feasible {
    a: Vec<Vec<Q>>,
    b: Vec<Q>,
    basis: Vec<usize>,
    unknowns: usize,
}

impl Feasible {
    fn pivot(&mut self, row: usize, col: usize) {
        let p = self.a[row][col];
        for v in &mut self.a[row] {
            *v = *v / p;
        }
        self.b[row] = self.b[row] / p;
        let pivot = self.a[row].clone();
        let pivot_b = self.b[row];
        for r in 0..self.a.len() {
            let factor = self.a[r][col];
            if r == row || factor.is_zero() {
                continue;
            }
            for (v, pv) in self.a[r].iter_mut().zip(&pivot) {
                if !pv.is_zero() {
                    *v = *v - factor * *pv;
                }
            }
            self.b[r] = self.b[r] - factor * pivot_b;
        }
        self.basis[row] = col;
    }

    /// Maximises `cost · x` over columns `0..columns` (Bland's rule, so it ends); `None` if
    /// unbounded.
    fn maximise(&mut self, cost: &[Q], columns: usize) -> Option<Q> {
        loop {
            let value = |t: &Feasible, j: usize| -> Q {
                // Reduced cost of column j: c_j - Σ c_B(i) a_ij.
                let mut d = cost[j];
                for (i, &bi) in t.basis.iter().enumerate() {
                    let c = cost[bi];
                    if !c.is_zero() && !t.a[i][j].is_zero() {
                        d = d - c * t.a[i][j];
                    }
                }
                d
            };
            let entering = (0..columns)
                .filter(|j| !self.basis.contains(j))
                .find(|&j| value(self, j).is_positive());
            let Some(j) = entering else {
                let mut total = Q::ZERO;
                for (i, &bi) in self.basis.iter().enumerate() {
                    total = total + cost[bi] * self.b[i];
                }
                return Some(total);
            };
            let leaving = (0..self.a.len())
                .filter(|&i| self.a[i][j].is_positive())
                .min_by(|&x, &y| {
                    (self.b[x] / self.a[x][j])
                        .cmp(&(self.b[y] / self.a[y][j]))
                        .then(self.basis[x].cmp(&self.basis[y]))
                })?;
            self.pivot(leaving, j);
        }
    }

    /// The largest value of unknown `x` the equations and non-negativity allow; `None` if
    /// there is no largest.
    pub(crate) fn maximum(&self, x: usize) -> Option<Q> {
        let mut t = self.clone();
        let mut cost = vec![Q::ZERO; t.a.first().map_or(t.unknowns, Vec::len)];
        cost[x] = Q::int(1);
        t.maximise(&cost, t.unknowns)
    }
}

#[test]
fn the_attacker_solves_what_can_be_solved() {
    // x0 + x1 = 5, x1 + x2 = 3, x2 = 1: everything is fixed.
    let row = |c: [i64; 3], r: i64| (c.map(Q::int).to_vec(), Q::int(r));
    let fixed = System {
        unknowns: 3,
        rows: vec![row([1, 1, 0], 5), row([0, 1, 1], 3), row([0, 0, 1], 1)],
    };
    assert_eq!(fixed.determined(), [true, true, true]);
    // x0 + x1 = 5 alone: neither is fixed, each is at most 5; x2 is free.
    let loose = System {
        unknowns: 3,
        rows: vec![row([1, 1, 0], 5)],
    };
    assert_eq!(loose.determined(), [false, false, false]);
    let feasible = loose.feasible();
    assert_eq!(feasible.maximum(0), Some(Q::int(5)));
    assert_eq!(feasible.maximum(2), None);
    // x0 - x1 = -2: x0 has no largest value, x1 is at least 2.
    let difference = System {
        unknowns: 2,
        rows: vec![(vec![Q::int(1), Q::int(-1)], Q::int(-2))],
    };
    assert_eq!(difference.feasible().maximum(0), None);
}
