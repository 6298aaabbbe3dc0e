//! Deciding whether the two sides of an equality agree, with the prototype's leniency:
//! a tiny relative tolerance, rounding of a written literal, and "approximately" mode.
//!
//! Each test answers `Some(true)`, `Some(false)`, or `None` when it could not be computed
//! within `i128`. The sides agree if any test says so; if none does but some could not be
//! computed, the verdict is unknown and the equality is skipped, never flagged.

use super::dd::Dd;
use super::expr::Literal;
use super::num::Num;
use super::rat::Rat;
use std::cmp::Ordering;

/// `Some(true)` at the first test that holds (the rest are never computed), else `None` if a
/// test could not be computed, else `Some(false)`.
fn first_agreement(tests: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for test in tests {
        match test {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

/// `Some(true)` if any of the tests holds, `None` if none holds but one was unknown.
fn any(tests: &[&dyn Fn() -> Option<bool>]) -> Option<bool> {
    first_agreement(tests.iter().map(|t| t()))
}

/// `|a - b| <= tol * m` exactly, where `tol = 1 / tol_den`.
fn within_exact(a: Rat, b: Rat, m: Rat, tol_den: i128) -> Option<bool> {
    let diff = a.sub(b)?.abs();
    let limit = m.div(Rat::int(tol_den)?)?;
    Some(diff.cmp_exact(limit) != Ordering::Greater)
}

/// `|a - b| <= tol * m` in double-double arithmetic.
fn within_dd(a: Dd, b: Dd, m: Dd, tol_den: f64) -> bool {
    a.sub(b).abs().le(m.div(Dd::from_f64(tol_den)))
}

/// Do the values `a` and `b` agree within the tolerances?
fn pair_agrees(a: Num, b: Num, approx: bool, inexact: bool) -> Option<bool> {
    if let (Num::Exact(x), Num::Exact(y)) = (a, b) {
        let m = if x.abs().cmp_exact(y.abs()) == Ordering::Less {
            y.abs()
        } else {
            x.abs()
        };
        let m1 = if m.cmp_exact(Rat::ONE) == Ordering::Less {
            Rat::ONE
        } else {
            m
        };
        return any(&[
            &|| Some(x == y),
            &|| {
                if inexact {
                    within_exact(x, y, m1, 10i128.pow(25))
                } else {
                    Some(false)
                }
            },
            &|| within_exact(x, y, m, 1_000_000),
            &|| {
                if approx {
                    within_exact(x, y, m, 100)
                } else {
                    Some(false)
                }
            },
        ]);
    }
    let (x, y) = (a.dd(), b.dd());
    let m = x.abs().max(y.abs());
    let m1 = m.max(Dd::from_f64(1.0));
    Some(
        x == y
            || (inexact && within_dd(x, y, m1, 1e25))
            || within_dd(x, y, m, 1e6)
            || (approx && within_dd(x, y, m, 100.0)),
    )
}

/// Does `x` round (or truncate, or for whole numbers floor/ceil) to the literal `lit`?
fn rounds_to(x: Num, lit: Literal) -> Option<bool> {
    // In units of the last written digit: y = x * 10^scale; the literal is an integer k.
    let k = lit.value.mul_pow10(lit.scale)?;
    if !k.is_int() {
        return Some(false);
    }
    let k = k.num();
    let whole = lit.scale == 0;
    match x {
        Num::Exact(r) => {
            let y = r.mul_pow10(lit.scale)?;
            if y.is_int() {
                // Only a value that is not already a whole number of units may be rounded.
                return Some(false);
            }
            let fl = y.floor();
            let frac = y.sub(Rat::int(fl)?)?;
            let half = frac.cmp_exact(Rat::new(1, 2)?);
            Some(round_candidates(fl, y.is_negative(), half, whole)?.contains(&k))
        }
        Num::Approx(d) => {
            let y = d.mul(Dd::from_i128(Rat::pow10(lit.scale)?));
            let fl = y.floor();
            if fl == y {
                return Some(false);
            }
            let half = y.sub(fl).cmp(Dd::from_f64(0.5));
            Some(round_candidates(fl.to_i128()?, y.hi < 0.0, half, whole)?.contains(&k))
        }
    }
}

/// The integers a writer could mean by a non-integer `y` with floor `fl`: nearest (half up or
/// half even), truncation towards zero; for whole-number literals also floor and ceiling.
fn round_candidates(fl: i128, negative: bool, half: Ordering, whole: bool) -> Option<Vec<i128>> {
    let up = fl.checked_add(1)?;
    let mut out = vec![if negative { up } else { fl }];
    match half {
        Ordering::Greater => out.push(up),
        Ordering::Less => out.push(fl),
        Ordering::Equal => out.extend([fl, up]),
    }
    if whole {
        out.extend([fl, up]);
    }
    Some(out)
}

/// "Approximately": within 1% of `x` plus one unit of the literal's last digit.
fn roughly(x: Num, lit: Literal) -> Option<bool> {
    let q = Rat::new(1, Rat::pow10(lit.scale)?)?;
    match x {
        Num::Exact(r) => {
            // 100 |x - v| <= |x| + 100 q
            let lhs = r.sub(lit.value)?.abs().mul(Rat::int(100)?)?;
            let rhs = r.abs().add(q.mul(Rat::int(100)?)?)?;
            Some(lhs.cmp_exact(rhs) != Ordering::Greater)
        }
        Num::Approx(d) => {
            let v = Num::Exact(lit.value).dd();
            let limit = d.abs().div(Dd::from_f64(100.0)).add(Num::Exact(q).dd());
            Some(d.sub(v).abs().le(limit))
        }
    }
}

/// Does the value `x` (one side) match the bare literal `lit` written on the other side?
fn literal_agrees(x: Num, lit: Literal, approx: bool) -> Option<bool> {
    any(&[
        &|| Some(x.same(Num::Exact(lit.value))),
        &|| rounds_to(x, lit),
        &|| if approx { roughly(x, lit) } else { Some(false) },
    ])
}

/// The sides agree if any pair of readings agrees, or a bare literal on one side is a
/// rounding of a value on the other. `None`: unknown (an intermediate left `i128`).
pub fn values_agree(
    left: &[Num],
    right: &[Num],
    lit_left: &[Literal],
    lit_right: &[Literal],
    approx: bool,
    inexact: bool,
) -> Option<bool> {
    let pairs = left.iter().flat_map(|&a| {
        right
            .iter()
            .map(move |&b| pair_agrees(a, b, approx, inexact))
    });
    let literals = [(lit_right, left), (lit_left, right)]
        .into_iter()
        .flat_map(|(lits, other)| {
            lits.iter()
                .flat_map(move |&lit| other.iter().map(move |&x| literal_agrees(x, lit, approx)))
        });
    first_agreement(pairs.chain(literals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: i128, d: i128) -> Num {
        Num::Exact(Rat::new(n, d).unwrap())
    }

    fn lit(n: i128, d: i128, scale: u32) -> Literal {
        Literal {
            value: Rat::new(n, d).unwrap(),
            scale,
        }
    }

    #[test]
    fn rounding_rules() {
        // (left, right literal as n/d at its scale, approximately, expected)
        let cases = [
            // 1/3 = 0.33 (rounded), but not 0.34
            ((1, 3), (33, 100, 2), false, true),
            ((1, 3), (34, 100, 2), false, false),
            // 10/3 = 4 (ceiling of a whole-number literal), but 3 = 4 is false
            ((10, 3), (4, 1, 0), false, true),
            ((3, 1), (4, 1, 0), false, false),
            // approximately: 100 vs 102 is within 1% plus one unit
            ((100, 1), (102, 1, 0), true, true),
        ];
        for ((ln, ld), (rn, rd, scale), approx, expected) in cases {
            let agree = values_agree(
                &[ex(ln, ld)],
                &[ex(rn, rd)],
                &[],
                &[lit(rn, rd, scale)],
                approx,
                false,
            );
            assert_eq!(agree, Some(expected), "{ln}/{ld} vs {rn}/{rd}");
        }
    }

    #[test]
    fn overflow_is_unknown() {
        let big = ex(i128::MAX - 1, 1);
        assert_eq!(
            values_agree(&[big], &[ex(-3, 1)], &[], &[], false, false),
            None
        );
    }
}
