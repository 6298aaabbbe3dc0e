//! A value that is exact (a rational) or approximate (after an irrational square root).

use super::dd::Dd;
use super::lex::Skip;
use super::rat::Rat;
use std::cmp::Ordering;

/// The value of an operand. Arithmetic stays exact until an irrational root forces an
/// approximation; from then on the result is a double-double.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    Exact(Rat),
    Approx(Dd),
}

impl Num {
    pub fn int(n: i128) -> Option<Num> {
        Rat::int(n).map(Num::Exact)
    }

    pub fn exact(self) -> Option<Rat> {
        match self {
            Num::Exact(r) => Some(r),
            Num::Approx(_) => None,
        }
    }

    pub fn dd(self) -> Dd {
        match self {
            Num::Exact(r) => Dd::from_i128(r.num()).div(Dd::from_i128(r.den())),
            Num::Approx(d) => d,
        }
    }

    /// Wraps an approximate result; an overflow to infinity means "cannot evaluate".
    fn approx(d: Dd) -> Option<Num> {
        d.is_finite().then_some(Num::Approx(d))
    }

    /// Applies an exact operation when both sides are exact, else the double-double one.
    fn combine(
        self,
        o: Num,
        exact: fn(Rat, Rat) -> Option<Rat>,
        approx: fn(Dd, Dd) -> Dd,
    ) -> Option<Num> {
        match (self, o) {
            (Num::Exact(a), Num::Exact(b)) => exact(a, b).map(Num::Exact),
            _ => Num::approx(approx(self.dd(), o.dd())),
        }
    }

    pub fn add(self, o: Num) -> Option<Num> {
        self.combine(o, Rat::add, Dd::add)
    }

    pub fn sub(self, o: Num) -> Option<Num> {
        self.combine(o, Rat::sub, Dd::sub)
    }

    pub fn mul(self, o: Num) -> Option<Num> {
        // 0 times an approximation is still exactly 0 (as with Python's Fractions).
        if self.is_exact_zero() || o.is_exact_zero() {
            return Some(Num::Exact(Rat::ZERO));
        }
        self.combine(o, Rat::mul, Dd::mul)
    }

    /// Division; `None` for a zero divisor.
    pub fn div(self, o: Num) -> Option<Num> {
        if o.is_zero() {
            return None;
        }
        if self.is_exact_zero() {
            return Some(Num::Exact(Rat::ZERO));
        }
        self.combine(o, Rat::div, Dd::div)
    }

    pub fn neg(self) -> Num {
        match self {
            Num::Exact(r) => Num::Exact(r.neg()),
            Num::Approx(d) => Num::Approx(d.neg()),
        }
    }

    fn is_exact_zero(self) -> bool {
        matches!(self, Num::Exact(r) if r.is_zero())
    }

    pub fn is_zero(self) -> bool {
        match self {
            Num::Exact(r) => r.is_zero(),
            Num::Approx(d) => d.hi == 0.0,
        }
    }

    pub fn is_negative(self) -> bool {
        match self {
            Num::Exact(r) => r.is_negative(),
            Num::Approx(d) => d.hi < 0.0,
        }
    }

    /// Order of two values: exact when both are exact, else by double-double.
    pub fn cmp(self, o: Num) -> Ordering {
        match (self, o) {
            (Num::Exact(a), Num::Exact(b)) => a.cmp_exact(b),
            _ => self.dd().cmp(o.dd()),
        }
    }

    pub fn same(self, o: Num) -> bool {
        self.cmp(o) == Ordering::Equal
    }

    /// The power `self ^ e` with Python's rules: integer exponents (|e| <= 10000, results
    /// up to about 16k bits), rational exponents only when the root is exact (`8^{1/3}`),
    /// approximate bases only to small integer powers.
    pub fn pow(self, e: Num) -> Result<Num, Skip> {
        let e = e.exact().ok_or(Skip("irrational exponent"))?;
        match self {
            Num::Exact(a) if e.is_int() => {
                if a.is_zero() && e.is_negative() {
                    return Err(Skip("0 to a negative power"));
                }
                if e.num().unsigned_abs() > 10_000
                    || u128::from(a.bits()) * e.num().unsigned_abs() > 16_000
                {
                    return Err(Skip("huge power"));
                }
                a.powi(e.num()).map(Num::Exact).ok_or(Skip::OVERFLOW)
            }
            Num::Exact(a) => {
                let q = u32::try_from(e.den()).ok().filter(|q| *q <= 12);
                let root = q
                    .and_then(|q| a.exact_root(q))
                    .ok_or(Skip("irrational root"))?;
                Num::Exact(root).pow(Num::Exact(Rat::int(e.num()).ok_or(Skip::OVERFLOW)?))
            }
            // Python's size limit (about 16k bits) on a 40-digit approximation.
            Num::Approx(d) if e.is_int() && e.num().unsigned_abs() <= 120 => {
                if d.hi == 0.0 && e.is_negative() {
                    return Err(Skip("0 to a negative power"));
                }
                Num::approx(d.powi(e.num())).ok_or(Skip::OVERFLOW)
            }
            Num::Approx(_) => Err(Skip("power of an approximation")),
        }
    }

    /// Square root: exact when the radicand is a perfect square of rationals, else an
    /// approximation (the flag says so).
    pub fn sqrt(self) -> Result<(Num, bool), Skip> {
        if self.is_negative() {
            return Err(Skip("sqrt of negative"));
        }
        if let Num::Exact(r) = self {
            if let Some(root) = r.exact_root(2) {
                return Ok((Num::Exact(root), false));
            }
        }
        Num::approx(self.dd().sqrt())
            .map(|v| (v, true))
            .ok_or(Skip::OVERFLOW)
    }

    /// Short text of the value: "41", "41/3" or "~1.414213562" for an approximation.
    pub fn show(self) -> String {
        match self {
            Num::Exact(r) if r.is_int() => r.num().to_string(),
            Num::Exact(r) => format!("{}/{}", r.num(), r.den()),
            Num::Approx(d) => format!("~{:.10}", d.hi),
        }
    }
}

/// The exact value of `int.frac` (ASCII digits), or `None` if it does not fit.
pub fn parse_decimal(int_digits: &str, frac_digits: &str) -> Option<Rat> {
    // Trailing zeros of the fraction do not change the value; dropping them lets
    // "1.50000000000000000000000000000000000000000" fit.
    let frac = frac_digits.trim_end_matches('0');
    let mut n: i128 = 0;
    for d in int_digits.chars().chain(frac.chars()) {
        n = n
            .checked_mul(10)?
            .checked_add(i128::from(d.to_digit(10)?))?;
    }
    let den = Rat::pow10(u32::try_from(frac.len()).ok()?)?;
    Rat::new(n, den)
}
