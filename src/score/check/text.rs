//! Step text as characters that remember where they stood in the step, and the rewrites the
//! tokeniser makes before scanning (degree signs, LaTeX thousands separators).

/// Text as characters, each with the byte range in the original step it stands for, so that
/// replacements and removals keep positions traceable.
#[derive(Clone, Debug, Default)]
pub struct Text {
    pub chars: Vec<char>,
    pub spans: Vec<(usize, usize)>,
}

impl Text {
    pub fn new(s: &str) -> Text {
        let mut t = Text::default();
        for (i, c) in s.char_indices() {
            t.push(c, (i, i + c.len_utf8()));
        }
        t
    }

    pub fn push(&mut self, c: char, span: (usize, usize)) {
        self.chars.push(c);
        self.spans.push(span);
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Characters `a..b` as a new text (the bounds are clamped).
    pub fn slice(&self, a: usize, b: usize) -> Text {
        let b = b.min(self.len());
        let a = a.min(b);
        Text {
            chars: self.chars[a..b].to_vec(),
            spans: self.spans[a..b].to_vec(),
        }
    }

    /// The original byte range covered by characters `a..b` (`b > a`).
    pub(super) fn span(&self, a: usize, b: usize) -> (usize, usize) {
        let first = self.spans.get(a).copied().unwrap_or_default();
        let last = self
            .spans
            .get(b.saturating_sub(1))
            .copied()
            .unwrap_or(first);
        (first.0, last.1.max(first.0))
    }

    pub(super) fn starts_with(&self, i: usize, pat: &str) -> bool {
        (i..)
            .zip(pat.chars())
            .all(|(k, p)| self.chars.get(k) == Some(&p))
    }
}

/// Python's `str.isspace` (Unicode White_Space plus the information separators).
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's regex `\w` for Unicode text.
pub fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// `$` is a LaTeX math delimiter (not currency) when some `$` (other than `\$`) is not
/// followed by a digit: a closing `$` is followed by space, punctuation or the end, while a
/// currency sign always precedes its amount.
pub fn uses_latex_dollars(t: &Text) -> bool {
    let c = &t.chars;
    (0..c.len()).any(|i| {
        c[i] == '$'
            && (i == 0 || c[i - 1] != '\\')
            && !c.get(i + 1).is_some_and(char::is_ascii_digit)
    })
}

/// Length of a degree sign `^\circ`, `^{\circ}` (with optional spaces) at `i`, or of `°`.
fn degree_len(t: &Text, i: usize) -> Option<usize> {
    let c = &t.chars;
    if c.get(i) == Some(&'°') {
        return Some(1);
    }
    if c.get(i) != Some(&'^') {
        return None;
    }
    let skip_ws = |mut k: usize| {
        while c.get(k).is_some_and(|&ch| is_space(ch)) {
            k += 1;
        }
        k
    };
    let mut k = skip_ws(i + 1);
    if c.get(k) == Some(&'{') {
        k = skip_ws(k + 1);
    }
    if !t.starts_with(k, "\\circ") {
        return None;
    }
    k = skip_ws(k + 5);
    if c.get(k) == Some(&'}') {
        k += 1;
    }
    Some(k - i)
}

/// Replaces each match of `find` (a length at a position) by `with` (possibly nothing), left
/// to right without rescanning, like Python's `re.sub` / `str.replace`.
fn replace(t: &Text, find: impl Fn(&Text, usize) -> Option<usize>, with: Option<char>) -> Text {
    let mut out = Text::default();
    let mut i = 0;
    while i < t.len() {
        match find(t, i) {
            Some(n) if n > 0 => {
                if let Some(w) = with {
                    out.push(w, t.span(i, i + n));
                }
                i += n;
            }
            _ => {
                out.push(t.chars[i], t.spans[i]);
                i += 1;
            }
        }
    }
    out
}

/// Degree signs become spaces; LaTeX thousands separators `1{,}000` and `1,\!000` become `,`.
pub(super) fn preprocess(t: &Text) -> Text {
    let t = replace(t, degree_len, Some(' '));
    let t = replace(&t, |t, i| t.starts_with(i, "{,}").then_some(3), Some(','));
    replace(&t, |t, i| t.starts_with(i, "\\!").then_some(2), None)
}
