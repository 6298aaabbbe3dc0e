//! Exact arithmetic check for math reasoning steps.
//!
//! A step that states a false numeric equality, such as `$286-5\cdot 49=11$` (the left side
//! is 41) or `(20 - 5) * 4 = 40` (it is 60), is flagged. Both sides of an `=` must be fully
//! numeric; they are evaluated exactly with `i128` rationals. The check is built for
//! precision: anything it cannot read exactly and unambiguously (variables, units inside
//! expressions, unknown functions, inequalities, questions, hypotheticals, values that leave
//! `i128`) is skipped, never flagged.
//!
//! This is a dependency-free port of the prototype `tools/arith_check/check.py`; see
//! `tools/arith_check/RESULTS.md` for its rules and measurements and
//! `tools/arith_check/RUST_PORT.md` for how the port was checked against it.

pub use crate::model::CheckRule;

mod agree;
mod commands;
mod dd;
mod expr;
mod find;
mod lex;
mod num;
mod rat;
mod text;
mod words;

use expr::{evaluate, literal_info};
use find::{find_equalities, plain_x_as_times, running_total, Equality, Sentences};
use lex::{Kind, Text, Tok};
use num::Num;
use std::cell::OnceCell;
use words::{Lowered, NEG_SENTENCE_WORDS};

/// What the check found in one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepCheck {
    /// No equality could be evaluated exactly and unambiguously.
    NotChecked,
    /// At least one equality was evaluated and all evaluated equalities hold.
    Verified,
    /// An equality is false as written: `claim` is its text as found in the step (e.g.
    /// `5\cdot 49=11`), `computed` the exact value of its left side (e.g. `41` or `41/3`).
    False { claim: String, computed: String },
}

/// Checks every numeric equality in a step; reports the first false one.
pub fn check_step(step: &str) -> StepCheck {
    let ctx = StepContext::new(step);
    let mut checked = false;
    for seg in segments(step) {
        match check_segment(&ctx, &seg) {
            Outcome::False(claim, computed) => return StepCheck::False { claim, computed },
            Outcome::Verified => checked = true,
            Outcome::NotChecked => {}
        }
    }
    if checked {
        StepCheck::Verified
    } else {
        StepCheck::NotChecked
    }
}

/// Index of the first step whose check is False, if any.
pub fn first_false(steps: &[&str]) -> Option<usize> {
    steps
        .iter()
        .position(|s| matches!(check_step(s), StepCheck::False { .. }))
}

/// The first step whose arithmetic is false, when `rule` uses the check.
pub fn first_false_under(rule: CheckRule, steps: &[String]) -> Option<usize> {
    match rule {
        CheckRule::Off => None,
        CheckRule::Min => first_false(&steps.iter().map(String::as_str).collect::<Vec<_>>()),
    }
}

/// The first error predicted from the model's (`-1`: none) and the check's first false step: a
/// false equality is an error wherever it stands, and the check never moves the model's
/// prediction later (an arithmetic slip often follows an earlier error in reasoning).
pub fn earliest_error(model: i32, check: Option<usize>) -> i32 {
    match (model, check.and_then(|c| i32::try_from(c).ok())) {
        (m, Some(c)) if m < 0 || c < m => c,
        (m, _) => m,
    }
}

/// Facts about the whole step that the per-equality rules consult.
struct StepContext<'a> {
    step: &'a str,
    /// The step says it is approximate ("about", "rounded", `≈`, `~`).
    approx: bool,
    /// The step rejects a candidate ("incorrect", "contradiction", `\neq`).
    rejects: bool,
}

impl StepContext<'_> {
    fn new(step: &str) -> StepContext<'_> {
        let low = Lowered::new(step);
        StepContext {
            step,
            approx: words::approx_step(&low),
            rejects: words::rejects(&low),
        }
    }
}

enum Outcome {
    NotChecked,
    Verified,
    False(String, String),
}

/// Length of a `Step k:` prefix (case-insensitive, with optional spaces), or 0.
fn step_prefix_len(t: &Text) -> usize {
    let c = &t.chars;
    let skip = |mut i: usize, f: &dyn Fn(char) -> bool| {
        while c.get(i).is_some_and(|&ch| f(ch)) {
            i += 1;
        }
        i
    };
    let i = skip(0, &|ch| lex::is_space(ch));
    let word: String = c.iter().skip(i).take(4).collect();
    if !word.eq_ignore_ascii_case("step") {
        return 0;
    }
    let i = skip(i + 4, &|ch| lex::is_space(ch));
    let j = skip(i, &|ch| ch.is_ascii_digit());
    if j == i {
        return 0;
    }
    let j = skip(j, &|ch| lex::is_space(ch));
    if c.get(j) != Some(&':') {
        return 0;
    }
    skip(j + 1, &|ch| lex::is_space(ch))
}

/// GSM8K calculator notes `<<a*b=c>>`: the character ranges of the whole note.
fn calc_notes(t: &Text) -> Vec<(usize, usize)> {
    let c = &t.chars;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < c.len() {
        if c[i] == '<' && c[i + 1] == '<' {
            let mut j = i + 2;
            while j < c.len() && c[j] != '<' && c[j] != '>' {
                j += 1;
            }
            if c.get(j) == Some(&'>') && c.get(j + 1) == Some(&'>') {
                out.push((i, j + 2));
                i = j + 2;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Splits a step into independently checked pieces: the text without its `Step k:` prefix
/// and calculator notes (each note replaced by a space), then each note's content.
fn segments(step: &str) -> Vec<Text> {
    let full = Text::new(step);
    let body = full.slice(step_prefix_len(&full), full.len());
    let notes = calc_notes(&body);
    let mut main = Text::default();
    let mut at = 0;
    for &(a, b) in &notes {
        for k in at..a {
            main.push(body.chars[k], body.spans[k]);
        }
        main.push(' ', body.spans[a]);
        at = b;
    }
    for k in at..body.len() {
        main.push(body.chars[k], body.spans[k]);
    }
    let mut segs = vec![main];
    segs.extend(notes.iter().map(|&(a, b)| body.slice(a + 2, b - 2)));
    segs
}

/// The verdict on one equality.
enum Verdict {
    /// Not evaluated, or false but excused (not a claim), or not decidable within `i128`.
    Skipped,
    Holds,
    False {
        claim: String,
        computed: String,
    },
}

/// One tokenised segment and, built on first need, its sentence structure.
struct Segment<'a> {
    ctx: &'a StepContext<'a>,
    toks: Vec<Tok>,
    sentences: OnceCell<Sentences>,
}

/// Checks all equalities of one segment.
fn check_segment(ctx: &StepContext, seg: &Text) -> Outcome {
    let Ok(mut toks) = lex::tokenize(seg) else {
        return Outcome::NotChecked;
    };
    plain_x_as_times(&mut toks);
    let equalities = find_equalities(&toks);
    let seg = Segment {
        ctx,
        toks,
        sentences: OnceCell::new(),
    };
    let mut checked = false;
    for eq in equalities.iter().filter(|eq| eq.reason.is_none()) {
        match seg.check(eq) {
            Verdict::Holds => checked = true,
            Verdict::False { claim, computed } => return Outcome::False(claim, computed),
            Verdict::Skipped => {}
        }
    }
    if checked {
        Outcome::Verified
    } else {
        Outcome::NotChecked
    }
}

impl Segment<'_> {
    /// Evaluates both sides of an equality and compares them.
    fn check(&self, eq: &Equality) -> Verdict {
        let (lt, rt) = (&self.toks[eq.left.clone()], &self.toks[eq.right.clone()]);
        let (Ok(left), Ok(right)) = (evaluate(lt), evaluate(rt)) else {
            return Verdict::Skipped;
        };
        let approx = self.toks[eq.rel].kind == Kind::Approx || self.ctx.approx;
        let inexact = left.inexact || right.inexact;
        let (lit_l, lit_r) = (literal_info(lt), literal_info(rt));
        match agree::values_agree(&left.vals, &right.vals, &lit_l, &lit_r, approx, inexact) {
            Some(true) => Verdict::Holds,
            // A reading that left i128 might have agreed: never flag on partial knowledge.
            Some(false)
                if !left.incomplete && !right.incomplete && !self.excused(eq, &left.vals) =>
            {
                Verdict::False {
                    claim: claim_text(self.ctx.step, lt, rt),
                    computed: show_values(&left.vals),
                }
            }
            _ => Verdict::Skipped,
        }
    }

    /// A false equality that is not a claim: a negated or hypothetical sentence, a rejected
    /// candidate, `%` on one side only ("20% = 30 students"), or a running total.
    fn excused(&self, eq: &Equality, left_vals: &[Num]) -> bool {
        let has_pct = |ts: &[Tok]| ts.iter().any(|t| t.kind == Kind::Pct);
        let (left, right) = (&self.toks[eq.left.clone()], &self.toks[eq.right.clone()]);
        let sentences = self
            .sentences
            .get_or_init(|| Sentences::new(&self.toks, NEG_SENTENCE_WORDS));
        sentences.negated(&self.toks, eq.a, eq.b)
            || self.ctx.rejects
            || has_pct(left) != has_pct(right)
            || running_total(left_vals, right)
    }
}

/// The equality as written in the step, from the first left token to the last right token.
fn claim_text(step: &str, left: &[Tok], right: &[Tok]) -> String {
    let (Some(first), Some(last)) = (left.first(), right.last()) else {
        return String::new();
    };
    match step.get(first.start..last.end.max(first.start)) {
        Some(s) => s.to_string(),
        None => left
            .iter()
            .chain(right)
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The readings of a side, e.g. "41", "41/3", or "1/5 | 20" when `%` is ambiguous.
fn show_values(vals: &[Num]) -> String {
    vals.iter()
        .map(|v| v.show())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod rule_tests {
    use super::earliest_error;

    #[test]
    fn the_check_only_moves_a_prediction_earlier() {
        assert_eq!(earliest_error(-1, None), -1);
        assert_eq!(earliest_error(-1, Some(3)), 3);
        assert_eq!(earliest_error(2, Some(3)), 2);
        assert_eq!(earliest_error(4, Some(3)), 3);
        assert_eq!(earliest_error(4, None), 4);
    }
}
