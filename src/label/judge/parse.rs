//! Reading a label out of the judge's answer, exactly as ACTPRM.md specifies: only the text after
//! the last `</think>` counts (a reasoning model's scratch work may mention any paragraph), a
//! conclusion of "correct" means no error, anything else points at the last analysis block.

use super::prompt::PromptFormat;

/// Why an answer gave no label; kept with the row (and the raw answer) for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable(pub String);

/// The first-error index (-1 = all correct, else 0-based) of a trajectory with `steps` steps.
pub fn parse_answer(format: PromptFormat, answer: &str, steps: usize) -> Result<i32, Unparseable> {
    let text = after_thinking(answer)?;
    let index = match format {
        PromptFormat::Critique => parse_critique(text)?,
        PromptFormat::ProcessBench => parse_boxed(text)?,
    };
    if index < -1 || index >= steps as i32 {
        return Err(Unparseable(format!(
            "first error {index} is out of range for {steps} steps"
        )));
    }
    Ok(index)
}

/// The text after the last `</think>`; an opened but never closed `<think>` means the answer was
/// cut off while still reasoning.
fn after_thinking(answer: &str) -> Result<&str, Unparseable> {
    if let Some(end) = answer.rfind("</think>") {
        return Ok(&answer[end + "</think>".len()..]);
    }
    if answer.contains("<think>") {
        return Err(Unparseable("the answer ends inside a <think> block".into()));
    }
    Ok(answer)
}

/// `<conclusion>Correct</conclusion>` -> -1; otherwise the number of the last `<analysis_N>`, minus 1.
fn parse_critique(text: &str) -> Result<i32, Unparseable> {
    let conclusion = last_tag_content(text, "conclusion")
        .ok_or_else(|| Unparseable("no <conclusion> in the answer".into()))?;
    let verdict = conclusion.trim();
    let verdict = verdict.strip_suffix('.').unwrap_or(verdict);
    if verdict.eq_ignore_ascii_case("correct") {
        return Ok(-1);
    }
    let last = last_analysis_number(text).ok_or_else(|| {
        Unparseable(format!(
            "conclusion {:?} but no <analysis_N> block",
            truncate(conclusion.trim(), 40)
        ))
    })?;
    // paragraphs are numbered from 1: <analysis_0> names no step, and a number past i32 is no
    // step either (never wrap it into one)
    match i32::try_from(last) {
        Ok(n) if n >= 1 => Ok(n - 1),
        _ => Err(Unparseable(format!(
            "conclusion {:?} points at <analysis_{last}>, which names no paragraph (they start at 1)",
            truncate(conclusion.trim(), 40)
        ))),
    }
}

/// The integer in the last `\boxed{...}` (ProcessBench's prompt: -1 = no error).
fn parse_boxed(text: &str) -> Result<i32, Unparseable> {
    let start = text
        .rfind("\\boxed{")
        .ok_or_else(|| Unparseable("no \\boxed{} in the answer".into()))?;
    let inner = &text[start + "\\boxed{".len()..];
    let end = inner
        .find('}')
        .ok_or_else(|| Unparseable("\\boxed{ is never closed".into()))?;
    let value = inner[..end].trim();
    value
        .parse::<i64>()
        .ok()
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| {
            Unparseable(format!(
                "\\boxed{{{}}} is not an integer",
                truncate(value, 40)
            ))
        })
}

/// The text between the last `<tag>` and the `</tag>` after it.
fn last_tag_content<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.rfind(&open)? + open.len();
    let len = text[start..].find(&close)?;
    Some(&text[start..start + len])
}

/// The number of the last `<analysis_N>` opening tag, in text order (any size: the caller
/// decides whether it names a paragraph).
fn last_analysis_number(text: &str) -> Option<u128> {
    let mut last = None;
    let mut rest = text;
    while let Some(pos) = rest.find("<analysis_") {
        let after = &rest[pos + "<analysis_".len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && after[digits.len()..].starts_with('>') {
            // beyond u128 still names no paragraph: saturate rather than skip the tag
            last = Some(digits.parse().unwrap_or(u128::MAX));
        }
        rest = after;
    }
    last
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The majority first-error index over parsed votes; a tie goes to the earliest error (an error
/// the judge saw in some samples is more informative than "all correct").
pub fn majority(votes: &[Option<i32>]) -> Option<i32> {
    let mut counts: Vec<(i32, usize)> = Vec::new();
    for v in votes.iter().flatten() {
        match counts.iter_mut().find(|(k, _)| k == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((*v, 1)),
        }
    }
    let best = counts.iter().map(|&(_, n)| n).max()?;
    let rank = |k: i32| if k < 0 { i32::MAX } else { k };
    counts
        .iter()
        .filter(|&&(_, n)| n == best)
        .map(|&(k, _)| k)
        .min_by_key(|&k| rank(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: PromptFormat = PromptFormat::Critique;

    #[test]
    fn correct_conclusion_means_no_error() {
        let a = "<analysis_1>fine</analysis_1>\n<analysis_2>fine</analysis_2>\n<conclusion>Correct</conclusion>";
        assert_eq!(parse_answer(C, a, 2), Ok(-1));
        assert_eq!(
            parse_answer(C, "<conclusion> correct. </conclusion>", 2),
            Ok(-1)
        );
        assert_eq!(
            parse_answer(C, "<conclusion>CORRECT.</conclusion>", 2),
            Ok(-1)
        );
    }

    #[test]
    fn otherwise_the_last_analysis_block_is_the_error() {
        let a = "<analysis_1>ok</analysis_1><analysis_2>wrong: 3p+e=124 is fine but</analysis_2><conclusion>Incorrect</conclusion>";
        assert_eq!(parse_answer(C, a, 3), Ok(1));
    }

    #[test]
    fn only_text_after_thinking_counts() {
        let a = "<think>maybe <analysis_3> ... <conclusion>Incorrect</conclusion></think><analysis_1>ok</analysis_1><conclusion>Correct.</conclusion>";
        assert_eq!(parse_answer(C, a, 3), Ok(-1));
        // QwQ behind vLLM without a reasoning parser: the opening tag is in the prompt template.
        let a =
            "reasoning...</think>\n<analysis_1>bad</analysis_1><conclusion>Incorrect</conclusion>";
        assert_eq!(parse_answer(C, a, 3), Ok(0));
        assert!(parse_answer(
            C,
            "<think>still thinking <conclusion>Correct</conclusion>",
            3
        )
        .is_err());
    }

    #[test]
    fn missing_parts_are_unparseable_with_a_reason() {
        // issue 12, item 4: a huge paragraph number overflowed `as i32 - 1` (a panic in debug
        // builds), and <analysis_0> silently became -1 ("all correct")
        let huge =
            "<analysis_2147483648>bad</analysis_2147483648><conclusion>Incorrect</conclusion>";
        assert!(parse_answer(C, huge, 3)
            .unwrap_err()
            .0
            .contains("names no paragraph"));
        let huger = "<analysis_99999999999999999999999999999999999999999>x<conclusion>Incorrect</conclusion>";
        assert!(parse_answer(C, huger, 3).is_err());
        let zero = "<analysis_0>bad</analysis_0><conclusion>Incorrect</conclusion>";
        assert!(parse_answer(C, zero, 3)
            .unwrap_err()
            .0
            .contains("<analysis_0>"));
        assert!(parse_answer(PromptFormat::ProcessBench, "\\boxed{99999999999}", 3).is_err());
        let e = parse_answer(C, "<analysis_1>ok</analysis_1>", 2).unwrap_err();
        assert!(e.0.contains("no <conclusion>"), "{e:?}");
        let e = parse_answer(C, "<conclusion>Incorrect</conclusion>", 2).unwrap_err();
        assert!(e.0.contains("no <analysis_N>"), "{e:?}");
        let e = parse_answer(
            C,
            "<analysis_5>x</analysis_5><conclusion>Incorrect</conclusion>",
            2,
        )
        .unwrap_err();
        assert!(e.0.contains("out of range"), "{e:?}");
    }

    #[test]
    fn processbench_reads_the_last_box() {
        let p = PromptFormat::ProcessBench;
        assert_eq!(
            parse_answer(p, "first \\boxed{0} then \\boxed{ 2 }", 4),
            Ok(2)
        );
        assert_eq!(parse_answer(p, "\\boxed{-1}", 4), Ok(-1));
        assert!(parse_answer(p, "\\boxed{two}", 4).is_err());
        assert!(parse_answer(p, "no box", 4).is_err());
        assert!(parse_answer(p, "\\boxed{7}", 4).is_err());
    }

    #[test]
    fn majority_prefers_the_earliest_error_on_ties() {
        assert_eq!(majority(&[Some(2), Some(2), Some(-1)]), Some(2));
        assert_eq!(majority(&[Some(-1), Some(3)]), Some(3));
        assert_eq!(majority(&[Some(-1), None, Some(-1), Some(1)]), Some(-1));
        assert_eq!(majority(&[None, None]), None);
    }
}
