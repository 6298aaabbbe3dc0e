//! Runs the Rust port of the arithmetic check over step texts, for `compare.py`.
//!
//! Input (file named on the command line): one JSON string per line, as written by Python's
//! `json.dumps`. Output (stdout): one line per input line, `C F<TAB>claim<TAB>computed`, where
//! C is 1 if the step was checked, F is 1 if it was flagged, and claim / computed are the
//! flagged equality (escaped with `escape_debug`, empty if not flagged).
//!
//! Build without cargo (from the repository root):
//!     rustc --edition 2021 -O tools/arith_check/rust_harness.rs -o /tmp/arith_harness

#[allow(dead_code)]
#[path = "../../src/score/check/mod.rs"]
mod check;

use check::{check_step, StepCheck};
use std::io::{BufWriter, Write};

/// Four hex digits at the start of `it`.
fn hex4(it: &mut std::str::Chars) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + it.next()?.to_digit(16)?;
    }
    Some(v)
}

/// Decodes one JSON string literal (with its quotes). Lone surrogates become U+FFFD.
fn unescape(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it.next()?;
        let decoded = match e {
            '"' | '\\' | '/' => e,
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => unicode_escape(&mut it)?,
            _ => return None,
        };
        out.push(decoded);
    }
    Some(out)
}

/// The character of a `\uXXXX` escape (after the `u`), joining a surrogate pair.
fn unicode_escape(it: &mut std::str::Chars) -> Option<char> {
    let hi = hex4(it)?;
    if !(0xD800..0xDC00).contains(&hi) {
        return Some(char::from_u32(hi).unwrap_or('\u{fffd}'));
    }
    let mut look = it.clone();
    if look.next() == Some('\\') && look.next() == Some('u') {
        if let Some(lo) = hex4(&mut look).filter(|lo| (0xDC00..0xE000).contains(lo)) {
            *it = look;
            return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
        }
    }
    Some('\u{fffd}')
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: rust_harness STEPS.jsonl");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (n, line) in text.lines().enumerate() {
        let Some(step) = unescape(line) else {
            eprintln!("{path}:{}: not a JSON string", n + 1);
            std::process::exit(2);
        };
        let row = match check_step(&step) {
            StepCheck::NotChecked => "0 0\t\t".to_string(),
            StepCheck::Verified => "1 0\t\t".to_string(),
            StepCheck::False { claim, computed } => {
                format!("1 1\t{}\t{}", claim.escape_debug(), computed.escape_debug())
            }
        };
        if writeln!(out, "{row}").is_err() {
            std::process::exit(1);
        }
    }
}
