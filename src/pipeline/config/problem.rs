//! A located problem in a pipeline file, and the report that shows all of them at once.

use std::fmt;

/// One problem at a 1-based line and column of the file as written (before interpolation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Problem {
    pub fn new(line: usize, col: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            col,
            message: message.into(),
        }
    }

    /// Where a span starts; the file's start when the span has no mark.
    pub fn at(span: &marked_yaml::Span, message: impl Into<String>) -> Self {
        let (line, col) = span
            .start()
            .map_or((1, 1), |m| (m.line().max(1), m.column().max(1)));
        Self::new(line, col, message)
    }
}

/// Every problem of one file, rendered as `FILE:LINE:COL: message`, the offending line and a caret.
#[derive(Debug, Clone)]
pub struct Report {
    pub file: String,
    pub problems: Vec<Problem>,
    lines: Vec<String>,
}

impl Report {
    pub fn new(file: &str, text: &str, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.line, p.col));
        problems.dedup();
        Self {
            file: file.to_string(),
            problems,
            lines: text.lines().map(str::to_string).collect(),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{}:{}:{}: {}", self.file, p.line, p.col, p.message)?;
            if let Some(src) = self.lines.get(p.line.saturating_sub(1)) {
                let number = p.line.to_string();
                let pad = " ".repeat(number.len());
                // the caret lines up under the column, tabs kept so it stays aligned
                let lead: String = src
                    .chars()
                    .take(p.col.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                writeln!(f, "{number} | {}", mask_credentials(src))?;
                writeln!(f, "{pad} | {lead}^")?;
            }
        }
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in {}",
            if n == 1 { "" } else { "s" },
            self.file
        )
    }
}

/// A source line safe to print: the `user:token@` of any URL in it becomes `***@` (the caret
/// column may shift right of it; the message names the field).
fn mask_credentials(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < word.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// " (did you mean `x`?)" or nothing.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates).map_or(String::new(), |c| format!(" (did you mean `{c}`?)"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(
            did_you_mean("dleta_pred", ["delta_pred", "delta_std"]),
            Some("delta_pred")
        );
        assert_eq!(did_you_mean("colour", ["delta_pred", "inputs"]), None);
    }

    #[test]
    fn renders_line_and_caret() {
        let r = Report::new(
            "p.yaml",
            "a: 1\n  bad: 2\n",
            vec![Problem::new(2, 3, "unknown key `bad`")],
        );
        assert_eq!(
            r.to_string(),
            "p.yaml:2:3: unknown key `bad`\n2 |   bad: 2\n  |   ^\n1 problem in p.yaml"
        );
    }
}

#[cfg(test)]
mod credential_tests {
    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            super::mask_credentials("    url: http://user:tok@host:1/v1 # x"),
            "    url: http://***@host:1/v1 # x"
        );
        assert_eq!(
            super::mask_credentials("url: http://host/v1"),
            "url: http://host/v1"
        );
    }
}
