//! Tokeniser for step text: plain text (GSM8K style) and LaTeX.
//!
//! A port of `tokenize` in `tools/arith_check/check.py`, with hand-written scanning in place of
//! its regular expressions. Every token remembers the byte range it came from in the original
//! step, so that a flagged equality can be quoted exactly as written.

use super::commands::{classify_command, FRAC_CMDS, SPACE_CMDS, TEXT_CMDS};
use super::num::parse_decimal;
use super::rat::Rat;
pub use super::text::{is_space, is_word_char, Text};
use super::text::{preprocess, uses_latex_dollars};

/// The expression cannot be read exactly and unambiguously; the reason is for debugging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip(pub &'static str);

impl Skip {
    /// An intermediate value left `i128`: the prototype, with big integers, may have had a
    /// value here, so a side with such a reading is incomplete.
    pub const OVERFLOW: Skip = Skip("value does not fit i128");
}

/// Token kinds, as in the prototype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Num,
    Op,
    Lp,
    Rp,
    Eq,
    Approx,
    Rel,
    Pct,
    Fact,
    Func,
    Word,
    Cmd,
    Punct,
    /// A token that must never touch an operand.
    Bad,
    Tilde,
    /// A hard separator: a LaTeX line break, `\( \) \[ \]`, or `$` used as a math delimiter.
    Sep,
}

/// One token. `start..end` is its byte range in the original step.
#[derive(Clone, Debug)]
pub struct Tok {
    pub kind: Kind,
    pub text: String,
    /// The value of a number; `None` when it does not fit an `i128` rational.
    pub val: Option<Rat>,
    /// Decimals written after the point, for rounding leniency.
    pub dec: u32,
    /// Whitespace before / after the token.
    pub sp: bool,
    pub spa: bool,
    /// An opening parenthesis that starts a `\frac` (for the mixed-number reading).
    pub frac: bool,
    /// A word glued to a preceding number or `)`: `5x`, `3rd`, `f(2)x`.
    pub attached: bool,
    pub start: usize,
    pub end: usize,
}

impl Tok {
    fn new(kind: Kind, text: &str, sp: bool, (start, end): (usize, usize)) -> Tok {
        Tok {
            kind,
            text: text.to_string(),
            val: None,
            dec: 0,
            sp,
            spa: false,
            frac: false,
            attached: false,
            start,
            end,
        }
    }

    pub fn is_op(&self, ops: &str) -> bool {
        self.kind == Kind::Op && ops.contains(self.text.as_str())
    }

    pub fn is_rel(&self) -> bool {
        matches!(self.kind, Kind::Eq | Kind::Approx)
    }
}

/// Tokenises one segment of a step.
pub fn tokenize(seg: &Text) -> Result<Vec<Tok>, Skip> {
    let latex_dollars = uses_latex_dollars(seg);
    let text = preprocess(seg);
    let mut lx = Lexer {
        t: &text,
        toks: Vec::new(),
        ld: latex_dollars,
    };
    lx.run(0, text.len(), 0)?;
    let toks = &mut lx.toks;
    for k in 1..toks.len() {
        toks[k - 1].spa = toks[k].sp;
    }
    if let Some(last) = toks.last_mut() {
        last.spa = true;
    }
    Ok(lx.toks)
}

/// A digit run `lo..hi` with an optional fractional part, as read by the number scanner.
struct NumLit {
    end: usize,
    int_digits: String,
    frac_digits: Option<String>,
}

/// The scanning state: the preprocessed text and the tokens so far (shared by the recursive
/// calls that read LaTeX arguments, as in the prototype).
struct Lexer<'a> {
    t: &'a Text,
    toks: Vec<Tok>,
    ld: bool,
}

impl Lexer<'_> {
    fn ch(&self, i: usize, hi: usize) -> Option<char> {
        if i < hi {
            self.t.chars.get(i).copied()
        } else {
            None
        }
    }

    fn span(&self, a: usize, b: usize) -> (usize, usize) {
        self.t.span(a, b)
    }

    fn push(&mut self, kind: Kind, text: &str, sp: bool, a: usize, b: usize) {
        let span = self.span(a, b);
        self.toks.push(Tok::new(kind, text, sp, span));
    }

    fn last_kind(&self) -> Option<Kind> {
        self.toks.last().map(|t| t.kind)
    }

    /// `{...}` at `i`: the content range and the index after the matching `}`.
    fn read_group(&self, i: usize, hi: usize) -> Result<(usize, usize, usize), Skip> {
        let mut depth = 0usize;
        let mut j = i;
        while j < hi {
            match self.t.chars[j] {
                '\\' => {
                    j += 2;
                    continue;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok((i + 1, j, j + 1));
                    }
                }
                _ => {}
            }
            j += 1;
        }
        Err(Skip("unbalanced braces"))
    }

    /// A macro argument: `{group}`, a command name, or a single non-space character.
    fn read_arg(&self, mut i: usize, hi: usize) -> Result<(usize, usize, usize), Skip> {
        while self.ch(i, hi) == Some(' ') {
            i += 1;
        }
        match self.ch(i, hi) {
            None => Err(Skip("missing argument")),
            Some('{') => self.read_group(i, hi),
            Some('\\') => {
                let k = self.letters_end(i + 1, hi);
                Ok(if k > i + 1 {
                    (i, k, k)
                } else {
                    (i, i + 1, i + 1)
                })
            }
            Some(_) => Ok((i, i + 1, i + 1)),
        }
    }

    /// End of the run of ASCII letters starting at `i`.
    fn letters_end(&self, mut i: usize, hi: usize) -> usize {
        while self.ch(i, hi).is_some_and(|c| c.is_ascii_alphabetic()) {
            i += 1;
        }
        i
    }

    /// Tokenises characters `lo..hi`.
    fn run(&mut self, lo: usize, hi: usize, depth: usize) -> Result<(), Skip> {
        if depth > 30 {
            return Err(Skip("too deep"));
        }
        let mut i = lo;
        let mut sp = true;
        while i < hi {
            let c = self.t.chars[i];
            if is_space(c) {
                sp = true;
                i += 1;
            } else if c == '\\' {
                i = self.command(i, hi, depth, &mut sp)?;
            } else if self.starts_number(i, hi, sp) {
                i = self.number(i, hi, sp);
                sp = false;
            } else if c.is_ascii_alphabetic() {
                i = self.word(i, hi, sp);
                sp = false;
            } else {
                i = self.symbol(i, hi, &mut sp);
            }
        }
        Ok(())
    }

    /// Tokenises the argument `a..b` wrapped in synthetic parentheses. The closing one spans
    /// up to `close_end` so that a quoted claim includes the whole construct.
    fn wrapped(
        &mut self,
        (a, b): (usize, usize),
        cmd: usize,
        close_end: usize,
        depth: usize,
    ) -> Result<(), Skip> {
        self.push(Kind::Lp, "(", false, cmd, a.max(cmd + 1));
        self.run(a, b, depth + 1)?;
        self.push(Kind::Rp, ")", false, cmd, close_end);
        Ok(())
    }

    /// A LaTeX command at `i` (a backslash); returns the index after it.
    fn command(&mut self, i: usize, hi: usize, depth: usize, sp: &mut bool) -> Result<usize, Skip> {
        let j = self.letters_end(i + 1, hi);
        let (name, j): (String, usize) = if j > i + 1 {
            (self.t.chars[i + 1..j].iter().collect(), j)
        } else {
            match self.ch(i + 1, hi) {
                Some(c) if c != '\n' => (c.to_string(), i + 2),
                _ => return Ok(i + 1),
            }
        };
        let name = name.as_str();
        let s = *sp;
        let tok = |lx: &mut Self, kind: Kind, text: &str| {
            lx.push(kind, text, s, i, j);
        };
        match name {
            "(" | ")" | "[" | "]" => {
                tok(self, Kind::Sep, name);
                *sp = true;
                return Ok(j);
            }
            "binom" => return self.two_arguments(true, (i, j, hi), depth, sp),
            _ if SPACE_CMDS.contains(&name) => {
                if !(name.starts_with("left")
                    || name.starts_with("right")
                    || name.starts_with("big")
                    || name.starts_with("Big"))
                {
                    *sp = true;
                }
                if matches!(name, "hspace" | "vspace" | "phantom") && self.ch(j, hi) == Some('{') {
                    return Ok(self.read_group(j, hi)?.2);
                }
                return Ok(j);
            }
            "%" => tok(self, Kind::Pct, "%"),
            "\\" => {
                tok(self, Kind::Sep, "\\\\");
                *sp = true;
                return Ok(j);
            }
            "{" | "}" | "|" | "#" | "_" | "&" => tok(self, Kind::Bad, name),
            "circ" => return Ok(j),
            _ => {
                if let Some(next) = self.command_group(name, i, j, hi, depth, sp)? {
                    return Ok(next);
                }
                let (kind, text) = classify_command(name);
                tok(self, kind, text);
            }
        }
        *sp = false;
        Ok(j)
    }

    /// Commands with arguments or content: `\text{}`, `\boxed{}`, `\frac`, `\sqrt`.
    /// Returns `None` when `name` is none of them.
    fn command_group(
        &mut self,
        name: &str,
        i: usize,
        j: usize,
        hi: usize,
        depth: usize,
        sp: &mut bool,
    ) -> Result<Option<usize>, Skip> {
        if TEXT_CMDS.contains(&name) {
            if self.ch(j, hi) != Some('{') {
                return Ok(Some(j));
            }
            let (a, b, next) = self.read_group(j, hi)?;
            self.text_words(a, b);
            *sp = true;
            return Ok(Some(next));
        }
        if name == "boxed" {
            if self.ch(j, hi) != Some('{') {
                return Ok(Some(j));
            }
            let (a, b, next) = self.read_group(j, hi)?;
            self.push(Kind::Lp, "(", *sp, i, j);
            self.run(a, b, depth + 1)?;
            self.push(Kind::Rp, ")", false, i, next);
            *sp = false;
            return Ok(Some(next));
        }
        if FRAC_CMDS.contains(&name) {
            return self.two_arguments(false, (i, j, hi), depth, sp).map(Some);
        }
        if name == "sqrt" {
            if self.ch(j, hi) == Some('[') {
                self.push(Kind::Cmd, "sqrt[]", *sp, i, j);
                *sp = false;
                return Ok(Some(j));
            }
            let (a, b, next) = self.read_arg(j, hi)?;
            self.push(Kind::Func, "sqrt", *sp, i, j);
            self.wrapped((a, b), i, next, depth)?;
            *sp = false;
            return Ok(Some(next));
        }
        Ok(None)
    }

    /// Words inside `\text{...}`: alphabetic ones are words, anything else is odd.
    fn text_words(&mut self, a: usize, b: usize) {
        let mut k = a;
        while k < b {
            if is_space(self.t.chars[k]) {
                k += 1;
                continue;
            }
            let s = k;
            while k < b && !is_space(self.t.chars[k]) {
                k += 1;
            }
            let w: String = self.t.chars[s..k].iter().collect();
            let kind = if w.chars().all(char::is_alphabetic) {
                Kind::Word
            } else {
                Kind::Bad
            };
            self.push(kind, &w, true, s, k);
        }
    }

    /// A command of two arguments at `i` (its name ends at `j`): `\binom{a}{b}` as FUNC binom
    /// followed by two parenthesised arguments, `\frac{a}{b}` as `((a)/(b))`, whose outer
    /// parenthesis is marked for the mixed-number reading of `3\frac{1}{2}`.
    fn two_arguments(
        &mut self,
        binom: bool,
        (i, j, hi): (usize, usize, usize),
        depth: usize,
        sp: &mut bool,
    ) -> Result<usize, Skip> {
        let (a1, b1, j) = self.read_arg(j, hi)?;
        let (a2, b2, j) = self.read_arg(j, hi)?;
        if binom {
            self.push(Kind::Func, "binom", *sp, i, i + 1);
            self.wrapped((a1, b1), i, j, depth)?;
            self.wrapped((a2, b2), i, j, depth)?;
        } else {
            self.push(Kind::Lp, "(", *sp, i, i + 1);
            if let Some(t) = self.toks.last_mut() {
                t.frac = true;
            }
            self.wrapped((a1, b1), i, j, depth)?;
            self.push(Kind::Op, "/", false, i, i + 1);
            self.wrapped((a2, b2), i, j, depth)?;
            self.push(Kind::Rp, ")", false, i, j);
        }
        *sp = false;
        Ok(j)
    }

    /// A number starts at `i`: a digit, or `.5` unless it continues a number (`1.2.3`).
    fn starts_number(&self, i: usize, hi: usize, sp: bool) -> bool {
        match self.ch(i, hi) {
            Some(c) if c.is_ascii_digit() => true,
            Some('.') => {
                self.ch(i + 1, hi).is_some_and(|c| c.is_ascii_digit())
                    && (sp || self.last_kind() != Some(Kind::Num))
            }
            _ => false,
        }
    }

    /// End of the digit run starting at `i`.
    fn digits_end(&self, mut i: usize, hi: usize) -> usize {
        while self.ch(i, hi).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        i
    }

    /// A decimal part `.ddd` at `i`, if any: its end.
    fn decimal_end(&self, i: usize, hi: usize) -> Option<usize> {
        (self.ch(i, hi) == Some('.') && self.ch(i + 1, hi).is_some_and(|c| c.is_ascii_digit()))
            .then(|| self.digits_end(i + 1, hi))
    }

    /// Scans a number like the prototype's regex: `1,234,567.5` (a comma followed by exactly
    /// three digits, not followed by a further digit), `12.5`, or `.5`.
    fn scan_number(&self, i: usize, hi: usize) -> NumLit {
        let run = self.digits_end(i, hi);
        let mut int_end = run;
        if (1..=3).contains(&(run - i)) {
            // Thousands groups: as many ",ddd" as possible, backing off one group if the last
            // one is followed by another digit.
            let mut ends = Vec::new();
            let mut k = run;
            while self.ch(k, hi) == Some(',') && self.digits_end(k + 1, hi) >= k + 4 {
                k += 4;
                ends.push(k);
            }
            let followed_by_digit = |e: usize| self.ch(e, hi).is_some_and(|c| c.is_ascii_digit());
            while ends.last().is_some_and(|&e| followed_by_digit(e)) {
                ends.pop();
            }
            if let Some(&e) = ends.last() {
                int_end = e;
            }
        }
        let int_digits: String = self.t.chars[i..int_end]
            .iter()
            .filter(|c| **c != ',')
            .collect();
        let (end, frac_digits) = match self.decimal_end(int_end, hi) {
            Some(e) => (e, Some(self.t.chars[int_end + 1..e].iter().collect())),
            None => (int_end, None),
        };
        NumLit {
            end,
            int_digits,
            frac_digits,
        }
    }

    fn number(&mut self, i: usize, hi: usize, sp: bool) -> usize {
        let lit = self.scan_number(i, hi);
        let text: String = self.t.chars[i..lit.end].iter().collect();
        let frac = lit.frac_digits.as_deref().unwrap_or("");
        self.push(Kind::Num, &text, sp, i, lit.end);
        if let Some(t) = self.toks.last_mut() {
            t.val = parse_decimal(&lit.int_digits, frac);
            t.dec = u32::try_from(frac.len()).unwrap_or(u32::MAX);
        }
        lit.end
    }

    fn word(&mut self, i: usize, hi: usize, sp: bool) -> usize {
        let end = self.letters_end(i, hi);
        let w: String = self.t.chars[i..end].iter().collect();
        let glued = !sp && matches!(self.last_kind(), Some(Kind::Num | Kind::Rp));
        if w == "sqrt" && self.ch(end, hi) == Some('(') {
            self.push(Kind::Func, "sqrt", sp, i, end);
        } else {
            self.push(Kind::Word, &w, sp, i, end);
            if let Some(t) = self.toks.last_mut() {
                t.attached = glued;
            }
        }
        end
    }

    /// Two- and three-character symbols (`**`, `==`, `5!=`, `<=`, `...`); returns the index
    /// after the symbol, or `None` if none starts at `i`.
    fn multi_char_symbol(&mut self, i: usize, hi: usize, s: bool) -> Option<usize> {
        let two: String = self.t.chars[i..(i + 2).min(hi)].iter().collect();
        let two = two.as_str();
        match two {
            "**" => self.push(Kind::Op, "^", s, i, i + 2),
            "==" => self.push(Kind::Eq, "=", s, i, i + 2),
            "!=" if !s && matches!(self.last_kind(), Some(Kind::Num | Kind::Rp)) => {
                // LaTeX "5!=120" is a factorial followed by '='.
                self.push(Kind::Fact, "!", false, i, i + 1);
                self.push(Kind::Eq, "=", false, i + 1, i + 2);
            }
            "=>" | "<=" | ">=" | "!=" | "->" | "=<" | "<>" => {
                self.push(Kind::Rel, two, s, i, i + 2)
            }
            _ if self.t.starts_with(i, "...") && i + 3 <= hi => {
                self.push(Kind::Bad, "...", s, i, i + 3);
                return Some(i + 3);
            }
            _ => return None,
        }
        Some(i + 2)
    }

    /// Operators, relations, brackets and punctuation; returns the index after the symbol.
    fn symbol(&mut self, i: usize, hi: usize, sp: &mut bool) -> usize {
        let c = self.t.chars[i];
        let s = *sp;
        *sp = false;
        if let Some(next) = self.multi_char_symbol(i, hi, s) {
            return next;
        }
        let (kind, text): (Kind, String) = match c {
            '+' | '-' | '*' | '/' | '^' => (Kind::Op, c.to_string()),
            '×' | '∙' | '·' | '⋅' => (Kind::Op, "*".into()),
            '÷' => (Kind::Op, "/".into()),
            '−' => (Kind::Op, "-".into()),
            '=' => (Kind::Eq, "=".into()),
            '≈' => (Kind::Approx, "~".into()),
            '<' | '>' | '≠' | '≤' | '≥' | '≡' | '→' | '⇒' => (Kind::Rel, c.to_string()),
            '(' | '{' => (Kind::Lp, "(".into()),
            ')' | '}' => (Kind::Rp, ")".into()),
            '%' => (Kind::Pct, "%".into()),
            '!' => (Kind::Fact, "!".into()),
            '$' | '&' | '°' => {
                if c == '$' && self.ld {
                    self.push(Kind::Sep, "$", true, i, i + 1);
                }
                // '$' and '&' count as whitespace; '°' is dropped.
                *sp = c != '°' || s;
                return i + 1;
            }
            '.' | ',' | ';' | ':' | '"' => (Kind::Punct, c.to_string()),
            '~' => (Kind::Tilde, "~".into()),
            _ => (Kind::Bad, c.to_string()),
        };
        self.push(kind, &text, s, i, i + 1);
        i + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Kind, String)> {
        tokenize(&Text::new(s))
            .unwrap()
            .into_iter()
            .map(|t| (t.kind, t.text))
            .collect()
    }

    #[test]
    fn numbers_with_separators() {
        let t = tokenize(&Text::new("1,000 and 1,2345 and 1{,}000.5 and .25")).unwrap();
        let nums: Vec<_> = t
            .iter()
            .filter(|t| t.kind == Kind::Num)
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(nums, ["1,000", "1", "2345", "1,000.5", ".25"]);
        let v = t.iter().find(|t| t.text == "1,000.5").and_then(|t| t.val);
        assert_eq!(v, Rat::new(2001, 2));
        let t = tokenize(&Text::new("1,234,5678")).unwrap();
        assert_eq!(t[0].text, "1,234");
    }

    #[test]
    fn latex_constructs() {
        let k = kinds("\\frac12 \\cdot 3^\\circ");
        let texts: Vec<_> = k.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            ["(", "(", "1", ")", "/", "(", "2", ")", ")", "*", "3"]
        );
        assert!(tokenize(&Text::new("\\frac{1}{2")).is_err());
        let k = kinds("$5!=120$");
        assert_eq!(k[2].0, Kind::Fact);
        assert_eq!(k[3].0, Kind::Eq);
    }

    #[test]
    fn spans_point_into_the_original() {
        let s = "So $\\frac{1}{3} = 0.5$";
        let t = tokenize(&Text::new(s)).unwrap();
        let lp = t.iter().find(|t| t.frac).map(|t| t.start).unwrap();
        let last = t
            .iter()
            .rfind(|t| t.kind == Kind::Num)
            .map(|t| t.end)
            .unwrap();
        assert_eq!(&s[lp..last], "\\frac{1}{3} = 0.5");
    }
}
