//! Word lists and the step-level phrase scans of the prototype (its regular expressions,
//! written out as word-boundary matching).

use super::lex::is_word_char;

/// Words that make the number next to them part of a larger expression.
pub const OPERATOR_WORDS: &[&str] = &[
    "times",
    "of",
    "plus",
    "minus",
    "divided",
    "multiplied",
    "by",
    "over",
    "squared",
    "cubed",
    "power",
    "powers",
    "percent",
    "half",
    "twice",
    "thrice",
    "double",
    "triple",
    "quarter",
    "third",
    "fourth",
    "fifth",
    "sqrt",
    "root",
    "roots",
    "log",
    "ln",
    "sin",
    "cos",
    "tan",
    "mod",
    "modulo",
    "factorial",
    "choose",
    "into",
    "than",
    "more",
    "less",
    "fewer",
    "x",
    "th",
    "st",
    "nd",
    "rd",
    "pi",
    "e",
    "i",
    "hundred",
    "thousand",
    "million",
    "billion",
    "trillion",
    "dozen",
    "dozens",
    "hundreds",
    "thousands",
    "millions",
    "score",
    "raised",
    "cent",
    "percentage",
    "k",
    "m",
    "bn",
];

/// Operator-like words that only matter left of the left operand ("sum of 3 and 4 + 5 = 12").
pub const LEFT_ONLY_OPERATOR_WORDS: &[&str] = &[
    "per",
    "each",
    "every",
    "and",
    "or",
    "from",
    "between",
    "with",
    "base",
    "sum",
    "product",
    "difference",
    "quotient",
];

/// Words that may sit between two equalities without being an operator ("= 12 and 5 + 2 = 7").
pub const CONNECTIVES: &[&str] = &[
    "and",
    "so",
    "then",
    "which",
    "but",
    "while",
    "thus",
    "hence",
    "therefore",
    "since",
    "because",
    "giving",
    "gives",
    "give",
    "or",
    "that",
    "this",
    "we",
    "for",
    "is",
    "are",
    "was",
    "also",
    "now",
    "in",
    "at",
    "on",
];

/// Words right before an equality that make it a hypothesis, question or negated claim.
pub const HYPO_WORDS: &[&str] = &[
    "if",
    "suppose",
    "assume",
    "assuming",
    "whether",
    "does",
    "do",
    "did",
    "check",
    "checking",
    "not",
    "isn",
    "doesn",
    "unless",
    "wrong",
    "incorrect",
    "false",
    "try",
    "trying",
    "test",
    "testing",
    "would",
    "could",
    "might",
    "should",
    "claim",
    "claims",
    "say",
    "says",
    "said",
    "want",
    "need",
    "needs",
    "solve",
    "set",
    "setting",
    "when",
    "whenever",
    "until",
    "guess",
    "maybe",
    "perhaps",
    "let",
    "lets",
    "no",
];

/// Words anywhere in the sentence that make a false equality a non-claim (a rejected
/// candidate, a hypothesis, a correction).
pub const NEG_SENTENCE_WORDS: &[&str] = &[
    "not",
    "isn",
    "doesn",
    "don",
    "aren",
    "wasn",
    "cannot",
    "never",
    "wrong",
    "incorrect",
    "mistake",
    "mistakes",
    "error",
    "false",
    "contradiction",
    "impossible",
    "oops",
    "typo",
    "wait",
    "actually",
    "instead",
    "correction",
    "supposed",
    "meant",
    "check",
    "checking",
    "verify",
    "whether",
    "suppose",
    "assume",
    "assuming",
    "unless",
    "no",
    "nope",
    "neither",
    "nor",
    "fails",
    "fail",
    "untrue",
    "hmm",
    "becomes",
];

/// Relations that negate the sentence they are in.
pub const NEG_RELS: &[&str] = &["neq", "ne", "≠", "!=", "<>", "not"];

/// Words before "of" that make "of" harmless ("a total of 24*1 = 24").
pub const OF_OK: &[&str] = &[
    "total",
    "sum",
    "product",
    "value",
    "result",
    "answer",
    "cost",
    "price",
    "area",
    "volume",
    "perimeter",
    "amount",
    "profit",
    "revenue",
    "earnings",
    "income",
    "savings",
    "distance",
    "length",
    "speed",
];

/// Whole-word phrases (case-insensitive) that announce a rejected candidate or contradiction.
const REJECT_PHRASES: &[&str] = &[
    "incorrect",
    "contradiction",
    "contradicts",
    "impossible",
    "cannot",
    "can't",
    "untrue",
    "extraneous",
    "invalid",
    "doesn't work",
    "does not work",
    "not a solution",
    "no solution",
    "not equal",
    "isn't equal",
    "is not true",
    "isn't true",
    "not possible",
    "false",
];

/// Whole words (case-insensitive) that put the step in "approximately" mode.
const APPROX_WORDS: &[&str] = &[
    "about",
    "around",
    "roughly",
    "nearly",
    "almost",
    "nearest",
    "close to",
    "decimal",
    "decimals",
    "calculator",
];

/// Word prefixes (whole word starting with it) that put the step in "approximately" mode.
const APPROX_PREFIXES: &[&str] = &["approx", "estimat", "round", "truncat"];

/// Lower-cased characters of a step, for case-insensitive phrase matching.
pub struct Lowered {
    chars: Vec<char>,
}

impl Lowered {
    pub fn new(s: &str) -> Lowered {
        // One-to-one ASCII lowering keeps positions; the phrases are all ASCII.
        Lowered {
            chars: s.chars().map(|c| c.to_ascii_lowercase()).collect(),
        }
    }

    fn is_word_at(&self, i: usize) -> bool {
        self.chars.get(i).is_some_and(|&c| is_word_char(c))
    }

    /// A word boundary before position `i` (the phrases start with a word character).
    fn boundary_before(&self, i: usize) -> bool {
        i == 0 || !self.is_word_at(i - 1)
    }

    fn matches_at(&self, i: usize, pat: &str) -> Option<usize> {
        let mut k = i;
        for p in pat.chars() {
            if self.chars.get(k) != Some(&p) {
                return None;
            }
            k += 1;
        }
        Some(k)
    }

    /// `\b(phrase)\b` anywhere.
    fn has_phrase(&self, phrases: &[&str]) -> bool {
        (0..self.chars.len()).any(|i| {
            self.boundary_before(i)
                && phrases.iter().any(|p| {
                    self.matches_at(i, p)
                        .is_some_and(|end| !self.is_word_at(end))
                })
        })
    }

    /// `\b(prefix)\w*` anywhere.
    fn has_prefix_word(&self, prefixes: &[&str]) -> bool {
        (0..self.chars.len()).any(|i| {
            self.boundary_before(i) && prefixes.iter().any(|p| self.matches_at(i, p).is_some())
        })
    }

    fn contains(&self, pat: &str) -> bool {
        (0..self.chars.len()).any(|i| self.matches_at(i, pat).is_some())
    }

    /// `\\neq?\b`: the LaTeX "not equal" commands.
    fn has_neq_command(&self) -> bool {
        (0..self.chars.len()).any(|i| match self.matches_at(i, "\\ne") {
            Some(end) => {
                !self.is_word_at(end)
                    || (self.chars.get(end) == Some(&'q') && !self.is_word_at(end + 1))
            }
            None => false,
        })
    }
}

/// The step says it is approximate: approx..., about, around, round..., `≈`, `~`, ...
pub fn approx_step(s: &Lowered) -> bool {
    s.has_phrase(APPROX_WORDS)
        || s.has_prefix_word(APPROX_PREFIXES)
        || s.contains("≈")
        || s.contains("~")
}

/// The step rejects a candidate: incorrect, contradiction, impossible, `≠`, `\neq`, ...
pub fn rejects(s: &Lowered) -> bool {
    s.has_phrase(REJECT_PHRASES) || s.contains("≠") || s.has_neq_command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrase_scans() {
        assert!(approx_step(&Lowered::new("This is Approximately 3")));
        assert!(approx_step(&Lowered::new("$x\\approx 2$")));
        assert!(!approx_step(&Lowered::new("background")));
        assert!(!approx_step(&Lowered::new("decimalsx")));
        assert!(approx_step(&Lowered::new("Rounded up")));
        assert!(rejects(&Lowered::new("That CAN'T be")));
        assert!(rejects(&Lowered::new("$3 \\neq 4$")));
        assert!(rejects(&Lowered::new("$3 \\ne 4$")));
        assert!(!rejects(&Lowered::new("\\newline")));
        assert!(!rejects(&Lowered::new("falsehood")));
    }
}
