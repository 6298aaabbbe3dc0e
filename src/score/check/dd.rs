//! Double-double floating point (about 32 significant decimal digits).
//!
//! Irrational square roots cannot be held exactly, and the Python prototype approximated them
//! to 40 decimals with big integers, which `i128` cannot hold. A double-double keeps about 32
//! digits, far more than the tolerances the comparison uses (1e-6 relative, or 1e-25 absolute
//! near zero once a root was approximated), so the verdicts are the same.

use std::cmp::Ordering;

/// An unevaluated sum `hi + lo` with `|lo| <= ulp(hi) / 2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

/// Exact sum of two doubles as (rounded sum, error).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// `two_sum` for `|a| >= |b|`.
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

/// Exact product of two doubles as (rounded product, error), via a fused multiply-add.
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

impl Dd {
    pub const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };

    pub fn from_f64(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }

    fn from_pair((hi, lo): (f64, f64)) -> Dd {
        Dd { hi, lo }
    }

    /// An `i128` to about 106 bits (exact below 2^106).
    pub fn from_i128(n: i128) -> Dd {
        let hi = n as f64;
        // `hi as i128` saturates at the ends of the range; the remainder is then off by at
        // most one unit, far below the precision kept.
        let lo = n.checked_sub(hi as i128).map_or(0.0, |r| r as f64);
        Dd::from_pair(quick_two_sum(hi, lo))
    }

    pub fn is_finite(self) -> bool {
        self.hi.is_finite() && self.lo.is_finite()
    }

    pub fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }

    pub fn abs(self) -> Dd {
        if self.hi < 0.0 {
            self.neg()
        } else {
            self
        }
    }

    pub fn add(self, o: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, o.hi);
        let (t, f) = two_sum(self.lo, o.lo);
        let (s, e) = quick_two_sum(s, e + t);
        Dd::from_pair(quick_two_sum(s, e + f))
    }

    pub fn sub(self, o: Dd) -> Dd {
        self.add(o.neg())
    }

    pub fn mul(self, o: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, o.hi);
        let e = e + (self.hi * o.lo + self.lo * o.hi);
        Dd::from_pair(quick_two_sum(p, e))
    }

    fn mul_f64(self, b: f64) -> Dd {
        let (p, e) = two_prod(self.hi, b);
        Dd::from_pair(quick_two_sum(p, e + self.lo * b))
    }

    /// Long division in three double-sized pieces.
    pub fn div(self, o: Dd) -> Dd {
        let q1 = self.hi / o.hi;
        let r = self.sub(o.mul_f64(q1));
        let q2 = r.hi / o.hi;
        let r = r.sub(o.mul_f64(q2));
        let q3 = r.hi / o.hi;
        Dd::from_pair(quick_two_sum(q1, q2)).add(Dd::from_f64(q3))
    }

    /// Square root by one Newton step from the double root (Karp's method); 0 for x <= 0.
    pub fn sqrt(self) -> Dd {
        if self.hi <= 0.0 {
            return Dd::ZERO;
        }
        let x = 1.0 / self.hi.sqrt();
        let ax = self.hi * x;
        let (p, e) = two_prod(ax, ax);
        let diff = self.sub(Dd { hi: p, lo: e });
        Dd::from_pair(two_sum(ax, diff.hi * (x * 0.5)))
    }

    /// Largest integer not above the value.
    pub fn floor(self) -> Dd {
        let fh = self.hi.floor();
        if fh == self.hi {
            Dd::from_pair(quick_two_sum(fh, self.lo.floor()))
        } else {
            Dd::from_f64(fh)
        }
    }

    /// The value as an `i128` when it is an integer well inside the range.
    pub fn to_i128(self) -> Option<i128> {
        if !self.is_finite() || self.hi.abs() >= 1e36 || self.floor() != self {
            return None;
        }
        (self.hi as i128).checked_add(self.lo as i128)
    }

    pub fn cmp(self, o: Dd) -> Ordering {
        match self.hi.partial_cmp(&o.hi) {
            Some(Ordering::Equal) => self.lo.partial_cmp(&o.lo).unwrap_or(Ordering::Equal),
            Some(ord) => ord,
            None => Ordering::Equal,
        }
    }

    pub fn le(self, o: Dd) -> bool {
        self.cmp(o) != Ordering::Greater
    }

    pub fn max(self, o: Dd) -> Dd {
        if self.cmp(o) == Ordering::Less {
            o
        } else {
            self
        }
    }

    /// Integer power by repeated squaring.
    pub fn powi(self, e: i128) -> Dd {
        let base = if e < 0 {
            Dd::from_f64(1.0).div(self)
        } else {
            self
        };
        let mut k = e.unsigned_abs();
        let (mut acc, mut sq) = (Dd::from_f64(1.0), base);
        while k > 0 {
            if k & 1 == 1 {
                acc = acc.mul(sq);
            }
            k >>= 1;
            sq = sq.mul(sq);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqrt_two_is_accurate() {
        let r = Dd::from_f64(2.0).sqrt();
        let err = r.mul(r).sub(Dd::from_f64(2.0)).abs();
        assert!(err.hi < 1e-30, "{err:?}");
        let third = Dd::from_f64(1.0).div(Dd::from_f64(3.0));
        let back = third.mul(Dd::from_f64(3.0)).sub(Dd::from_f64(1.0)).abs();
        assert!(back.hi < 1e-31);
        assert_eq!(
            Dd::from_i128(i128::MAX).cmp(Dd::from_f64(1.8e38)),
            Ordering::Less
        );
        assert_eq!(Dd::from_f64(-2.5).floor().to_i128(), Some(-3));
    }
}
