//! Finding the checkable equalities among a segment's tokens, and the boundary rules that
//! make an equality a skip (variables, units, operator words, hypotheticals, ...).

use super::expr::literal_info;
use super::lex::{Kind, Tok};
use super::num::Num;
use super::words::{
    CONNECTIVES, HYPO_WORDS, LEFT_ONLY_OPERATOR_WORDS, NEG_RELS, OF_OK, OPERATOR_WORDS,
};
use std::ops::Range;

/// One `=` or `≈` with its operands (token index ranges) and, if it must be skipped, why.
pub struct Equality {
    pub left: Range<usize>,
    pub right: Range<usize>,
    /// Index of the `=` / `≈` token.
    pub rel: usize,
    pub reason: Option<&'static str>,
    /// The untrimmed operand runs `a..rel` and `rel+1..b` (for sentence context).
    pub a: usize,
    pub b: usize,
}

/// Kinds that may appear inside an operand.
fn is_math(t: &Tok) -> bool {
    matches!(
        t.kind,
        Kind::Num | Kind::Op | Kind::Lp | Kind::Rp | Kind::Pct | Kind::Fact | Kind::Func
    )
}

/// End of the run of math tokens starting at `i`.
fn math_run_end(toks: &[Tok], mut i: usize) -> usize {
    while toks.get(i).is_some_and(is_math) {
        i += 1;
    }
    i
}

/// In plain text (GSM8K style) `5 x 3` means 5*3, when both neighbours are numeric and the
/// `x` is spaced like an operator.
pub fn plain_x_as_times(toks: &mut [Tok]) {
    for i in 1..toks.len().saturating_sub(1) {
        let t = &toks[i];
        if t.kind != Kind::Word || !(t.text == "x" || t.text == "X") || t.sp != t.spa {
            continue;
        }
        let before = matches!(toks[i - 1].kind, Kind::Num | Kind::Rp | Kind::Pct);
        let after = matches!(toks[i + 1].kind, Kind::Num | Kind::Lp);
        if before && after {
            let t = &mut toks[i];
            t.kind = Kind::Op;
            t.text = "*".to_string();
            t.attached = false;
        }
    }
}

/// `None` if the token at `idx` (next to an operand run; may be out of range) is a safe
/// boundary, else the reason to skip.
fn boundary(
    toks: &[Tok],
    idx: Option<usize>,
    left: bool,
    right_ends: &[usize],
) -> Option<&'static str> {
    let t = toks.get(idx?)?;
    let idx = idx?;
    match t.kind {
        Kind::Sep | Kind::Eq | Kind::Approx => None,
        Kind::Punct if ".,:;".contains(t.text.as_str()) => {
            // Sentence punctuation must be followed by whitespace: "3:4", "1.2.3", "f(1,2)".
            (!t.spa).then_some("punctuation glued to operand")
        }
        Kind::Punct => None,
        Kind::Word => word_boundary(toks, idx, left, right_ends),
        Kind::Tilde => Some("tilde"),
        _ => Some("token next to operand"),
    }
}

/// The boundary rules for a word next to an operand.
fn word_boundary(
    toks: &[Tok],
    idx: usize,
    left: bool,
    right_ends: &[usize],
) -> Option<&'static str> {
    let t = &toks[idx];
    let lw = t.text.to_lowercase();
    let lw = lw.as_str();
    let prev = idx.checked_sub(1).and_then(|k| toks.get(k));
    let next = toks.get(idx + 1);
    if t.attached || (left && !t.spa) || (!left && !t.sp) {
        return Some("word glued to operand");
    }
    if t.text.chars().count() == 1 && t.text != "I" {
        return Some("single letter (variable?)");
    }
    let prev_word = prev.filter(|p| p.kind == Kind::Word);
    if left
        && lw == "of"
        && prev_word.is_some_and(|p| OF_OK.contains(&p.text.to_lowercase().as_str()))
    {
        return None; // "a total of 24*1 = 24"
    }
    let ends_previous =
        right_ends.contains(&idx) || (prev_word.is_some() && right_ends.contains(&(idx - 1)));
    if left && CONNECTIVES.contains(&lw) && ends_previous {
        return None; // "2 * 3 = 6 and 4 * 5 = 20", "= 6 apples and 4 + 5 = 9"
    }
    if OPERATOR_WORDS.contains(&lw) || (left && LEFT_ONLY_OPERATOR_WORDS.contains(&lw)) {
        return Some("operator word");
    }
    if left && HYPO_WORDS.contains(&lw) {
        return Some("hypothetical");
    }
    // A word between two numbers may be an operator written out ("1 nabla 2").
    if left && prev.is_some_and(|p| matches!(p.kind, Kind::Num | Kind::Rp | Kind::Pct)) {
        return Some("word between numbers");
    }
    if !left
        && next.is_some_and(|n| matches!(n.kind, Kind::Num | Kind::Lp))
        && !CONNECTIVES.contains(&lw)
    {
        return Some("word between numbers");
    }
    None
}

/// Trims unmatched `(` at the start of a left operand; any other imbalance is a skip.
fn trim_left(toks: &[Tok], run: Range<usize>) -> Result<Range<usize>, &'static str> {
    let mut opens = Vec::new();
    for k in run.clone() {
        match toks[k].kind {
            Kind::Lp => opens.push(k),
            Kind::Rp if opens.pop().is_none() => return Err("unbalanced ')' in left operand"),
            _ => {}
        }
    }
    if opens.iter().enumerate().any(|(n, &k)| k != run.start + n) {
        return Err("left operand is inside a larger expression");
    }
    Ok(run.start + opens.len()..run.end)
}

/// Trims unmatched `)` at the end of a right operand; any other imbalance is a skip.
fn trim_right(toks: &[Tok], run: Range<usize>) -> Result<Range<usize>, &'static str> {
    let mut depth = 0usize;
    let mut closes = Vec::new();
    for k in run.clone() {
        match toks[k].kind {
            Kind::Lp => depth += 1,
            Kind::Rp if depth == 0 => closes.push(k),
            Kind::Rp => depth -= 1,
            _ => {}
        }
    }
    if depth > 0 {
        return Err("unbalanced '(' in right operand");
    }
    let keep = run.end - closes.len();
    if closes.iter().enumerate().any(|(n, &k)| k != keep + n) {
        return Err("right operand is inside a larger expression");
    }
    Ok(run.start..keep)
}

/// Indices where a right operand ends (for "= 6 and 4 * 5 = 20" connectives).
fn right_ends(toks: &[Tok]) -> Vec<usize> {
    (0..toks.len())
        .filter(|&p| toks[p].is_rel())
        .map(|p| math_run_end(toks, p + 1))
        .filter(|&b| toks.get(b - 1).is_some_and(is_math))
        .collect()
}

/// "85 * 9 minutes = 765 minutes": the same unit word right before `=` and right after the
/// right operand is dropped; returns where the left operand ends.
fn left_end_before_unit(toks: &[Tok], p: usize, b: usize) -> usize {
    let (Some(unit), Some(after)) = (p.checked_sub(1).and_then(|k| toks.get(k)), toks.get(b))
    else {
        return p;
    };
    let same_unit = p >= 2
        && unit.kind == Kind::Word
        && unit.text.chars().count() > 1
        && after.kind == Kind::Word
        && after.text.to_lowercase() == unit.text.to_lowercase()
        && unit.sp
        && toks[p - 2].kind == Kind::Num
        && after.sp;
    if same_unit {
        p - 1
    } else {
        p
    }
}

/// Shape checks on the trimmed operands (operators at the ends, a minus glued to a word).
fn operand_shape(
    toks: &[Tok],
    left: &Range<usize>,
    right: &Range<usize>,
    a: usize,
) -> Option<&'static str> {
    let (l0, ln, r0, rn) = (
        &toks[left.start],
        &toks[left.end - 1],
        &toks[right.start],
        &toks[right.end - 1],
    );
    if l0.kind == Kind::Op && l0.text != "-" {
        return Some("left operand starts with an operator");
    }
    if ln.kind == Kind::Op || rn.kind == Kind::Op {
        return Some("operand ends with an operator");
    }
    if r0.kind == Kind::Op && r0.text != "-" {
        return Some("right operand starts with an operator");
    }
    let lb = a.checked_sub(1).and_then(|k| toks.get(k));
    if l0.kind == Kind::Op && lb.is_some_and(|t| t.kind == Kind::Word && !t.spa) {
        return Some("minus glued to word");
    }
    None
}

/// A standalone "10 = -10" is a statement about an equation (a contradiction, a substituted
/// check), not a computation; it still counts when it holds.
fn standalone_literals(
    toks: &[Tok],
    left: &Range<usize>,
    right: &Range<usize>,
    a: usize,
    b: usize,
) -> Option<&'static str> {
    let (ll, lr) = (
        literal_info(&toks[left.clone()]),
        literal_info(&toks[right.clone()]),
    );
    if ll.is_empty() || lr.is_empty() {
        return None;
    }
    let chained_before = a > 0 && toks[a - 1].is_rel();
    let chained_after = toks.get(b).is_some_and(Tok::is_rel);
    if chained_before || chained_after {
        return None;
    }
    let common = ll.iter().any(|x| lr.iter().any(|y| x.value == y.value));
    (!common).then_some("standalone literal = literal")
}

/// Every `=` / `≈` in the segment, with trimmed operands and a skip reason if any.
pub fn find_equalities(toks: &[Tok]) -> Vec<Equality> {
    let ends = right_ends(toks);
    let mut out = Vec::new();
    for p in (0..toks.len()).filter(|&p| toks[p].is_rel()) {
        let b = math_run_end(toks, p + 1);
        let end = left_end_before_unit(toks, p, b);
        let mut a = end;
        while a > 0 && is_math(&toks[a - 1]) {
            a -= 1;
        }
        let (left, right, mut reason) = match (trim_left(toks, a..end), trim_right(toks, p + 1..b))
        {
            (Ok(l), Ok(r)) => (l, r, None),
            (Err(e), _) | (_, Err(e)) => (a..end, p + 1..b, Some(e)),
        };
        if left.is_empty() || right.is_empty() {
            reason = reason.or(Some("empty operand"));
        }
        if reason.is_none() {
            reason = boundary(toks, a.checked_sub(1), true, &ends)
                .or_else(|| boundary(toks, Some(b), false, &ends));
        }
        if reason.is_none() {
            reason = operand_shape(toks, &left, &right, a);
        }
        if reason.is_none() {
            reason = standalone_literals(toks, &left, &right, a, b);
        }
        out.push(Equality {
            left,
            right,
            rel: p,
            reason,
            a,
            b,
        });
    }
    out
}

/// The sentence structure of a segment, for the rule that a false equality in a sentence
/// with negation or verification words (or a negated relation, or a question) is no claim.
/// Built once per segment so that each equality is judged in constant time.
pub struct Sentences {
    /// Indices of the tokens that end a sentence, in order.
    ends: Vec<usize>,
    /// `negs[k]`: how many of the first `k` tokens are negation words or negated relations.
    negs: Vec<usize>,
}

/// Sentences end at `.`, `?`, `!` or `;` followed by whitespace, or at a LaTeX line break.
fn ends_sentence(t: &Tok) -> bool {
    (t.kind == Kind::Sep && t.text == "\\\\")
        || (matches!(t.text.as_str(), "." | "?" | "!" | ";")
            && matches!(t.kind, Kind::Punct | Kind::Bad | Kind::Fact)
            && t.spa)
}

impl Sentences {
    pub fn new(toks: &[Tok], neg_words: &[&str]) -> Sentences {
        let is_neg = |t: &Tok| match t.kind {
            Kind::Word => neg_words.contains(&t.text.to_lowercase().as_str()),
            Kind::Rel => NEG_RELS.contains(&t.text.as_str()),
            _ => false,
        };
        let ends = (0..toks.len())
            .filter(|&k| ends_sentence(&toks[k]))
            .collect();
        let mut negs = Vec::with_capacity(toks.len() + 1);
        negs.push(0);
        for t in toks {
            negs.push(negs[negs.len() - 1] + usize::from(is_neg(t)));
        }
        Sentences { ends, negs }
    }

    /// Is the text from the sentence start before token `a` to the sentence end at or after
    /// token `b` negated, or a question?
    pub fn negated(&self, toks: &[Tok], a: usize, b: usize) -> bool {
        let before = self.ends.partition_point(|&e| e < a);
        let start = before.checked_sub(1).map_or(0, |k| self.ends[k] + 1);
        let after = self.ends.partition_point(|&e| e < b);
        let end = self.ends.get(after).copied().unwrap_or(toks.len());
        let count = |k: usize| self.negs.get(k).copied().unwrap_or(0);
        let negated = count(end) > count(start.min(end));
        negated || toks.get(end).is_some_and(|t| t.text == "?")
    }
}

/// "5 + 3 = 8 * 2 = 16" written as a running total: the right operand starts with the left
/// value and goes on with an operator.
pub fn running_total(left_vals: &[Num], right: &[Tok]) -> bool {
    match right {
        [first, op, _, ..] if first.kind == Kind::Num && op.kind == Kind::Op => first
            .val
            .is_some_and(|v| left_vals.iter().any(|l| l.same(Num::Exact(v)))),
        _ => false,
    }
}
