//! Exact evaluation of an operand (a run of numeric tokens) by recursive descent.
//!
//! A port of `Parser` and `evaluate` in `tools/arith_check/check.py`. Grammar:
//!
//! ```text
//! expr    := term (('+'|'-') term)*
//! term    := unary (('*'|'/') unary | implicit product)*
//! unary   := ('-'|'+') unary | power
//! power   := postfix ('^' unary)?
//! postfix := primary ('!' | '%')*
//! primary := NUM | '(' expr ')' | sqrt '(' expr ')' | binom '(' expr ')' '(' expr ')'
//! ```
//!
//! Ambiguous notation is read every plausible way and the operand keeps the set of values.

use super::lex::{Kind, Skip, Tok};
use super::num::Num;
use super::rat::{binom, factorial, Rat};

/// Deeper nesting than this is refused (the prototype would hit Python's recursion limit).
const MAX_DEPTH: usize = 200;

/// How many trailing `!` may be read as punctuation (the prototype recursed without bound).
const MAX_BANG_RETRIES: usize = 16;

/// How one reading interprets the ambiguous notations.
#[derive(Clone, Copy)]
struct Reading {
    /// `%` as division by 100 (else as a unit that is ignored).
    pct_div: bool,
    /// `3\frac{1}{2}` as a mixed number (else as a product).
    mixed_add: bool,
    /// `24 / 2/3` as 24 ÷ (2/3) (else left to right).
    tight: bool,
}

/// `toks[i..i+3]` is NUM '/' NUM written without spaces (2/3), with a nonzero divisor.
fn tight_fraction_at(toks: &[Tok], i: usize) -> bool {
    match toks.get(i..i + 3) {
        Some([a, op, b]) => {
            a.kind == Kind::Num
                && op.is_op("/")
                && b.kind == Kind::Num
                && !op.sp
                && !b.sp
                && b.val.is_some_and(|v| !v.is_zero())
        }
        _ => false,
    }
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    how: Reading,
    depth: usize,
    /// An irrational square root was approximated.
    inexact: bool,
}

type Res = Result<Num, Skip>;

/// Turns a failed (`None`) arithmetic step into an overflow skip.
fn fit(v: Option<Num>) -> Res {
    v.ok_or(Skip::OVERFLOW)
}

/// `v / w`, with division by zero as a skip of its own (it is not an overflow).
fn divide(v: Num, w: Num) -> Res {
    if w.is_zero() {
        return Err(Skip("division by zero"));
    }
    fit(v.div(w))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn peek_kind(&self) -> Option<Kind> {
        self.peek().map(|t| t.kind)
    }

    fn prev_kind(&self) -> Option<Kind> {
        self.i
            .checked_sub(1)
            .and_then(|k| self.t.get(k))
            .map(|t| t.kind)
    }

    fn parse(&mut self) -> Res {
        if self.t.is_empty() {
            return Err(Skip("empty"));
        }
        let v = self.expr()?;
        if self.i != self.t.len() {
            return Err(Skip("trailing tokens"));
        }
        Ok(v)
    }

    fn expr(&mut self) -> Res {
        let mut v = self.term()?;
        while let Some(op) = self.peek().filter(|t| t.is_op("+-")).map(|t| t.text == "+") {
            self.i += 1;
            let w = self.term()?;
            v = fit(if op { v.add(w) } else { v.sub(w) })?;
        }
        Ok(v)
    }

    /// Implicit multiplication: 2(3+4), (2)(3), 2\sqrt{3}, 3!7!, 2!(5-2)!
    fn implicit_product_next(&self) -> bool {
        let (Some(next), Some(prev)) = (self.peek_kind(), self.prev_kind()) else {
            return false;
        };
        (matches!(next, Kind::Lp | Kind::Func) && matches!(prev, Kind::Num | Kind::Rp | Kind::Fact))
            || (next == Kind::Num && prev == Kind::Fact)
    }

    fn term(&mut self) -> Res {
        let mut v = self.unary()?;
        loop {
            if let Some(mul) = self.peek().filter(|t| t.is_op("*/")).map(|t| t.text == "*") {
                self.i += 1;
                let w = self.divisor_or_factor(mul)?;
                v = if mul { fit(v.mul(w))? } else { divide(v, w)? };
            } else if self.implicit_product_next() {
                let w = self.unary()?;
                v = fit(v.mul(w))?;
            } else {
                return Ok(v);
            }
        }
    }

    /// The operand after `*` or `/`; after `/` in the tight reading, a glued `2/3` is one
    /// fraction.
    fn divisor_or_factor(&mut self, mul: bool) -> Res {
        if !mul && self.how.tight && tight_fraction_at(self.t, self.i) {
            let (a, b) = (self.t[self.i].val, self.t[self.i + 2].val);
            self.i += 3;
            return match (a, b) {
                (Some(a), Some(b)) => fit(a.div(b).map(Num::Exact)),
                _ => Err(Skip::OVERFLOW),
            };
        }
        self.unary()
    }

    fn enter(&mut self) -> Result<(), Skip> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Skip("too deep"));
        }
        Ok(())
    }

    fn unary(&mut self) -> Res {
        self.enter()?;
        let v = match self.peek().filter(|t| t.is_op("+-")).map(|t| t.text == "-") {
            Some(neg) => {
                self.i += 1;
                let v = self.unary()?;
                if neg {
                    v.neg()
                } else {
                    v
                }
            }
            None => self.power()?,
        };
        self.depth -= 1;
        Ok(v)
    }

    fn power(&mut self) -> Res {
        let v = self.postfix()?;
        if !self.peek().is_some_and(|t| t.is_op("^")) {
            return Ok(v);
        }
        self.i += 1;
        if self.peek().is_some_and(|t| t.is_op("+")) {
            return Err(Skip("'^+' (a one-sided limit?)"));
        }
        let e = self.unary()?;
        v.pow(e)
    }

    fn postfix(&mut self) -> Res {
        let mut v = self.primary()?;
        loop {
            match self.peek_kind() {
                Some(Kind::Fact) => {
                    self.i += 1;
                    let n = v
                        .exact()
                        .filter(|r| r.is_int() && (0..=500).contains(&r.num()));
                    let n = n.ok_or(Skip("factorial of a non-integer"))?;
                    v = Num::Exact(factorial(n.num()).ok_or(Skip::OVERFLOW)?);
                }
                Some(Kind::Pct) => {
                    self.i += 1;
                    if self.how.pct_div {
                        v = divide(v, fit(Num::int(100))?)?;
                    }
                }
                _ => return Ok(v),
            }
        }
    }

    fn primary(&mut self) -> Res {
        self.enter()?;
        let v = self.primary_inner()?;
        self.depth -= 1;
        Ok(v)
    }

    fn primary_inner(&mut self) -> Res {
        let Some(t) = self.peek() else {
            return Err(Skip("unexpected end"));
        };
        match (t.kind, t.text.as_str()) {
            (Kind::Num, _) => {
                let val = t.val.ok_or(Skip::OVERFLOW)?;
                self.i += 1;
                self.mixed_number(Num::Exact(val))
            }
            (Kind::Lp, _) => {
                self.i += 1;
                let v = self.expr()?;
                if self.peek_kind() != Some(Kind::Rp) {
                    return Err(Skip("unbalanced"));
                }
                self.i += 1;
                Ok(v)
            }
            (Kind::Func, "binom") => {
                self.i += 1;
                self.binom()
            }
            (Kind::Func, "sqrt") => {
                self.i += 1;
                self.sqrt()
            }
            _ => Err(Skip("unexpected token")),
        }
    }

    /// A number directly followed by a `\frac`: a mixed number or a product.
    fn mixed_number(&mut self, whole: Num) -> Res {
        if !self.peek().is_some_and(|t| t.kind == Kind::Lp && t.frac) {
            return Ok(whole);
        }
        let f = self.primary()?;
        if self.how.mixed_add {
            fit(whole.add(f))
        } else {
            fit(whole.mul(f))
        }
    }

    /// A parenthesised argument, as required after `sqrt` and `binom`.
    fn argument(&mut self, what: &'static str) -> Res {
        if self.peek_kind() != Some(Kind::Lp) {
            return Err(Skip(what));
        }
        self.primary()
    }

    fn binom(&mut self) -> Res {
        let a = self.argument("binom without arguments")?;
        let b = self.argument("binom without arguments")?;
        let (Some(a), Some(b)) = (a.exact(), b.exact()) else {
            return Err(Skip("binom of non-integers"));
        };
        if !a.is_int() || !b.is_int() || a.is_negative() || a.num() > 2000 {
            return Err(Skip("binom of non-integers"));
        }
        binom(a.num(), b.num())
            .map(Num::Exact)
            .ok_or(Skip::OVERFLOW)
    }

    fn sqrt(&mut self) -> Res {
        let v = self.argument("sqrt without parens")?;
        let (root, approximated) = v.sqrt()?;
        self.inexact |= approximated;
        Ok(root)
    }
}

/// The values of one side of an equality.
pub struct Side {
    /// Distinct values of the readings that could be evaluated.
    pub vals: Vec<Num>,
    /// An irrational square root was approximated.
    pub inexact: bool,
    /// Some reading could not be evaluated within `i128`: its value is unknown, so the side
    /// can confirm an equality but never refute one.
    pub incomplete: bool,
}

/// The values of an operand under every allowed reading. Readings: `%` as /100 or as a unit;
/// a number before `\frac` as a mixed number or a product; `a / b/c` as (a/b)/c or a/(b/c);
/// a final `!` followed by a space as a factorial or as punctuation.
pub fn evaluate(toks: &[Tok]) -> Result<Side, Skip> {
    let mut side = Side {
        vals: Vec::new(),
        inexact: false,
        incomplete: false,
    };
    let mut err = Skip("no reading");
    let mut end = toks.len();
    loop {
        let part = &toks[..end];
        for how in readings(part) {
            let mut p = Parser {
                t: part,
                i: 0,
                how,
                depth: 0,
                inexact: false,
            };
            match p.parse() {
                Ok(v) => {
                    if !side.vals.iter().any(|w| w.same(v)) {
                        side.vals.push(v);
                    }
                    side.inexact |= p.inexact;
                }
                Err(e) => {
                    side.incomplete |= e == Skip::OVERFLOW;
                    err = e;
                }
            }
        }
        // "5! is the answer": the '!' may be punctuation; try again without it (a few times
        // at most, so that a long run of "! ! !" stays linear).
        match part.last() {
            Some(t) if t.kind == Kind::Fact && t.spa && toks.len() - end < MAX_BANG_RETRIES => {
                end -= 1
            }
            _ => break,
        }
    }
    if side.vals.is_empty() {
        return Err(err);
    }
    Ok(side)
}

/// The readings worth trying for this token list (only ambiguities that occur in it).
fn readings(toks: &[Tok]) -> Vec<Reading> {
    let pct = toks.iter().any(|t| t.kind == Kind::Pct);
    let mixed = toks.iter().any(|t| t.frac);
    let tight = toks
        .iter()
        .enumerate()
        .any(|(k, t)| t.is_op("/") && tight_fraction_at(toks, k + 1));
    let mut out = Vec::new();
    for pct_div in [true, false] {
        for mixed_add in [true, false] {
            for tight_reading in [false, true] {
                if (pct || pct_div) && (mixed || mixed_add) && (tight || !tight_reading) {
                    out.push(Reading {
                        pct_div,
                        mixed_add,
                        tight: tight_reading,
                    });
                }
            }
        }
    }
    out
}

/// A bare written number (optionally signed, parenthesised or with `%`): its value and the
/// size of its last written digit as a power of ten (`value`, `scale` with quantum
/// `10^-scale`), used for rounding leniency.
#[derive(Clone, Copy, Debug)]
pub struct Literal {
    pub value: Rat,
    pub scale: u32,
}

/// The readings of an operand that is a bare literal; empty if it is not one (or does not fit).
pub fn literal_info(toks: &[Tok]) -> Vec<Literal> {
    let (neg, mut body) = match toks.first() {
        Some(t) if t.is_op("+-") => (t.text == "-", &toks[1..]),
        _ => (false, toks),
    };
    while body.len() >= 2 && body[0].kind == Kind::Lp && body[body.len() - 1].kind == Kind::Rp {
        body = &body[1..body.len() - 1];
    }
    let number = |t: &Tok| t.val.map(|v| if neg { v.neg() } else { v });
    match body {
        [n] if n.kind == Kind::Num => number(n)
            .map(|value| {
                vec![Literal {
                    value,
                    scale: n.dec,
                }]
            })
            .unwrap_or_default(),
        [n, p] if n.kind == Kind::Num && p.kind == Kind::Pct => {
            let Some(v) = number(n) else {
                return Vec::new();
            };
            let as_fraction = v.div_pow10(2).zip(n.dec.checked_add(2));
            let mut out: Vec<Literal> = as_fraction
                .map(|(value, scale)| Literal { value, scale })
                .into_iter()
                .collect();
            out.push(Literal {
                value: v,
                scale: n.dec,
            });
            out
        }
        _ => Vec::new(),
    }
}
