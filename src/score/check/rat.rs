//! Exact rationals over `i128` with checked arithmetic.
//!
//! The Python prototype used arbitrary-precision `Fraction`s with a size cap; here every
//! operation that would leave the `i128` range returns `None`, and the caller turns that into
//! "cannot evaluate exactly", so an equality is skipped rather than flagged.

use std::cmp::Ordering;

/// A rational number in lowest terms with a positive denominator.
///
/// Invariant: `den > 0`, `gcd(num, den) == 1`, and `num != i128::MIN`, so that negation and
/// `abs` never overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rat {
    num: i128,
    den: i128,
}

/// Greatest common divisor of two magnitudes (Euclid on `u128`, never overflows).
fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        let r = a % b;
        a = b;
        b = r;
    }
    a
}

/// `gcd` of two `i128`s as an `i128`; `None` only when it is `2^127` (both are `i128::MIN`).
fn gcd_i(a: i128, b: i128) -> Option<i128> {
    i128::try_from(gcd(a.unsigned_abs(), b.unsigned_abs())).ok()
}

impl Rat {
    pub const ZERO: Rat = Rat { num: 0, den: 1 };
    pub const ONE: Rat = Rat { num: 1, den: 1 };

    /// `num / den` in lowest terms; `None` for a zero denominator or an unrepresentable value.
    pub fn new(num: i128, den: i128) -> Option<Rat> {
        if den == 0 {
            return None;
        }
        let g = gcd_i(num, den)?;
        let (mut n, mut d) = if g > 1 {
            (num / g, den / g)
        } else {
            (num, den)
        };
        if d < 0 {
            n = n.checked_neg()?;
            d = d.checked_neg()?;
        }
        if n == i128::MIN {
            return None;
        }
        Some(Rat { num: n, den: d })
    }

    /// An integer as a rational (`None` only for `i128::MIN`).
    pub fn int(n: i128) -> Option<Rat> {
        Rat::new(n, 1)
    }

    pub fn num(self) -> i128 {
        self.num
    }

    pub fn den(self) -> i128 {
        self.den
    }

    pub fn is_int(self) -> bool {
        self.den == 1
    }

    pub fn is_zero(self) -> bool {
        self.num == 0
    }

    pub fn is_negative(self) -> bool {
        self.num < 0
    }

    /// `10^k` as an integer, if it fits.
    pub fn pow10(k: u32) -> Option<i128> {
        10i128.checked_pow(k)
    }

    pub fn neg(self) -> Rat {
        // num != i128::MIN by the invariant, so this cannot overflow.
        Rat {
            num: -self.num,
            den: self.den,
        }
    }

    pub fn abs(self) -> Rat {
        Rat {
            num: self.num.abs(),
            den: self.den,
        }
    }

    pub fn add(self, o: Rat) -> Option<Rat> {
        // Reduce by the gcd of the denominators first to keep the intermediates small.
        let g = gcd_i(self.den, o.den)?;
        let a = self.num.checked_mul(o.den / g)?;
        let b = o.num.checked_mul(self.den / g)?;
        Rat::new(a.checked_add(b)?, (self.den / g).checked_mul(o.den)?)
    }

    pub fn sub(self, o: Rat) -> Option<Rat> {
        self.add(o.neg())
    }

    pub fn mul(self, o: Rat) -> Option<Rat> {
        // Cross-cancel before multiplying, as Fraction does, to avoid needless overflow.
        let g1 = gcd_i(self.num, o.den)?.max(1);
        let g2 = gcd_i(o.num, self.den)?.max(1);
        let n = (self.num / g1).checked_mul(o.num / g2)?;
        let d = (self.den / g2).checked_mul(o.den / g1)?;
        Rat::new(n, d)
    }

    /// `1 / self`; `None` for zero.
    pub fn recip(self) -> Option<Rat> {
        Rat::new(self.den, self.num)
    }

    pub fn div(self, o: Rat) -> Option<Rat> {
        self.mul(o.recip()?)
    }

    /// `self / 10^k`.
    pub fn div_pow10(self, k: u32) -> Option<Rat> {
        self.div(Rat::int(Rat::pow10(k)?)?)
    }

    /// `self * 10^k`.
    pub fn mul_pow10(self, k: u32) -> Option<Rat> {
        self.mul(Rat::int(Rat::pow10(k)?)?)
    }

    /// Largest integer not above the value (never overflows).
    pub fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }

    /// Number of bits of the larger of |numerator| and denominator (Python's size measure).
    pub fn bits(self) -> u32 {
        let n = 128 - self.num.unsigned_abs().leading_zeros();
        let d = 128 - self.den.unsigned_abs().leading_zeros();
        n.max(d)
    }

    /// Exact comparison by continued fractions: no products, so it can never overflow.
    pub fn cmp_exact(self, o: Rat) -> Ordering {
        let (mut a, mut b, mut c, mut d) = (self.num, self.den, o.num, o.den);
        loop {
            // b, d > 0 here: both start positive and later become nonzero remainders.
            let (q1, r1) = (a.div_euclid(b), a.rem_euclid(b));
            let (q2, r2) = (c.div_euclid(d), c.rem_euclid(d));
            match (q1.cmp(&q2), r1 == 0, r2 == 0) {
                (Ordering::Equal, true, true) => return Ordering::Equal,
                (Ordering::Equal, true, false) => return Ordering::Less,
                (Ordering::Equal, false, true) => return Ordering::Greater,
                // Equal integer parts: r1/b < r2/d  <=>  d/r2 < b/r1.
                (Ordering::Equal, false, false) => (a, b, c, d) = (d, r2, b, r1),
                (ord, _, _) => return ord,
            }
        }
    }

    /// Integer power by repeated squaring; `None` on overflow or for 0 to a negative power.
    pub fn powi(self, e: i128) -> Option<Rat> {
        let base = if e < 0 { self.recip()? } else { self };
        let mut k = e.unsigned_abs();
        let mut acc = Rat::ONE;
        let mut sq = base;
        while k > 0 {
            if k & 1 == 1 {
                acc = acc.mul(sq)?;
            }
            k >>= 1;
            if k > 0 {
                sq = sq.mul(sq)?;
            }
        }
        Some(acc)
    }

    /// The exact k-th root if both numerator and denominator are perfect k-th powers.
    pub fn exact_root(self, k: u32) -> Option<Rat> {
        if self.num < 0 || k == 0 {
            return None;
        }
        let p = iroot_exact(self.num.unsigned_abs(), k)?;
        let q = iroot_exact(self.den.unsigned_abs(), k)?;
        Rat::new(i128::try_from(p).ok()?, i128::try_from(q).ok()?)
    }
}

/// `x^k` on `u128`, `None` on overflow.
fn upow(x: u128, k: u32) -> Option<u128> {
    x.checked_pow(k)
}

/// The integer k-th root of `n` when `n` is a perfect k-th power (binary search).
fn iroot_exact(n: u128, k: u32) -> Option<u128> {
    if n < 2 || k == 1 {
        return Some(n);
    }
    let (mut lo, mut hi) = (0u128, 1u128 << (128 / k + 1).min(127));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match upow(mid, k) {
            Some(v) if v < n => lo = mid + 1,
            _ => hi = mid,
        }
    }
    (upow(lo, k) == Some(n)).then_some(lo)
}

/// `n!` for 0 <= n <= 500 (Python's limit); `None` when it leaves `i128` (from 34!).
pub fn factorial(n: i128) -> Option<Rat> {
    if !(0..=500).contains(&n) {
        return None;
    }
    let mut acc: i128 = 1;
    for k in 2..=n {
        acc = acc.checked_mul(k)?;
    }
    Rat::int(acc)
}

/// `C(n, k)` as Python's `math.comb` (0 when k > n); `None` on overflow.
pub fn binom(n: i128, k: i128) -> Option<Rat> {
    if k < 0 || k > n {
        return Some(Rat::ZERO);
    }
    let k = k.min(n - k);
    let mut c: i128 = 1;
    for i in 0..k {
        // c * (n - i) / (i + 1) is an integer; cancel first so the product stays small.
        let g = gcd_i(c, i + 1)?;
        let rest = (i + 1) / g;
        c = (c / g).checked_mul((n - i) / rest)?;
    }
    Rat::int(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i128, d: i128) -> Rat {
        Rat::new(n, d).unwrap()
    }

    #[test]
    fn normalises_and_compares() {
        assert_eq!(r(6, -4), r(-3, 2));
        assert_eq!(r(1, 3).cmp_exact(r(333, 1000)), Ordering::Greater);
        assert_eq!(r(-7, 2).cmp_exact(r(-3, 1)), Ordering::Less);
        assert_eq!(r(5, 7).cmp_exact(r(10, 14)), Ordering::Equal);
        let big = r(i128::MAX, i128::MAX - 1);
        assert_eq!(
            big.cmp_exact(r(i128::MAX - 1, i128::MAX - 2)),
            Ordering::Less
        );
        assert!(Rat::new(i128::MIN, 1).is_none());
    }

    #[test]
    fn overflow_is_none() {
        let big = Rat::int(i128::MAX / 2 + 1).unwrap();
        assert!(big.add(big).is_none());
        assert!(big.mul(Rat::int(3).unwrap()).is_none());
        assert!(factorial(34).is_none());
        assert_eq!(factorial(5), Rat::int(120));
        assert_eq!(binom(10, 3), Rat::int(120));
        assert_eq!(binom(3, 5), Some(Rat::ZERO));
        assert_eq!(r(2, 3).powi(-2), Some(r(9, 4)));
        assert_eq!(Rat::ONE.powi(20_000), Some(Rat::ONE));
        assert!(Rat::int(3).unwrap().powi(100).is_none());
        assert_eq!(r(27, 8).exact_root(3), Some(r(3, 2)));
        assert!(r(2, 1).exact_root(2).is_none());
    }
}
