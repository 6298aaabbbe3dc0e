//! Prompted models (imported PRMs): the text is the template with the problem, then each step's
//! text, tokenised as the family's reference code does. `whole`: the text is encoded at once
//! (as `apply_chat_template` or `encode(text)` do) and split at the tokens that end each step's
//! text, found by their byte offsets, so a step marker inside a step is never counted. `pieces`:
//! the template and each step are encoded alone and the marker id appended (Skywork's
//! reference). Either way the ids become a prefix plus per-step pieces, so a trajectory longer
//! than the context is windowed as for the default model; within one window the ids are exactly
//! the reference's.

use super::{build_windows, TokenisedTrajectory, Tokeniser};
use crate::model::manifest::{PromptEncoding, PromptSpec};

/// A manifest's prompt that cannot work, and why.
pub fn check(prompt: &PromptSpec) -> Result<(), String> {
    let first = prompt.first_step.as_deref().unwrap_or(&prompt.step);
    if !prompt.template.contains("{problem}") && !first.contains("{problem}") {
        return Err("prompt: neither template nor first_step holds {problem}".into());
    }
    if !prompt.step.contains("{step}") || !first.contains("{step}") {
        return Err("prompt: step and first_step must hold {step}".into());
    }
    Ok(())
}

/// The text of one trajectory and, per step, the byte range of its text.
fn render(prompt: &PromptSpec, problem: &str, steps: &[String]) -> (String, Vec<(usize, usize)>) {
    let problem = if prompt.trim {
        problem.trim_start()
    } else {
        problem
    };
    let mut text = prompt.template.replace("{problem}", problem);
    let mut ranges = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let step = if prompt.trim { step.trim() } else { step };
        let labelled;
        let step = match &prompt.step_label {
            Some(label) if !step.to_lowercase().starts_with("step") => {
                labelled = format!("{}{step}", label.replace("{index}", &(i + 1).to_string()));
                labelled.as_str()
            }
            _ => step,
        };
        let form = match (&prompt.first_step, i) {
            (Some(first), 0) => first.as_str(),
            _ => prompt.step.as_str(),
        };
        let start = text.len();
        // placeholders are filled in one pass, so a step's own text is never scanned again
        let mut rest = form;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let tail = &rest[open..];
            let (value, skip) = if tail.starts_with("{step}") {
                (step.to_string(), "{step}".len())
            } else if tail.starts_with("{problem}") {
                (problem.to_string(), "{problem}".len())
            } else if tail.starts_with("{index}") {
                ((i + 1).to_string(), "{index}".len())
            } else {
                ("{".to_string(), 1)
            };
            text.push_str(&value);
            rest = &tail[skip..];
        }
        text.push_str(rest);
        ranges.push((start, text.len()));
    }
    (text, ranges)
}

/// Tokenises trajectories as `prompt` says (`tokeniser`: its tokenizer, special ids and window
/// limits).
pub fn encode(
    tokeniser: &Tokeniser,
    prompt: &PromptSpec,
    trajectories: &[(&str, &[String])],
) -> Result<Vec<TokenisedTrajectory>, String> {
    match prompt.encoding {
        PromptEncoding::Whole => whole(tokeniser, prompt, trajectories),
        PromptEncoding::Pieces => pieces(tokeniser, prompt, trajectories),
    }
}

fn whole(
    tokeniser: &Tokeniser,
    prompt: &PromptSpec,
    trajectories: &[(&str, &[String])],
) -> Result<Vec<TokenisedTrajectory>, String> {
    let (tokenizer, special, limits) = (&tokeniser.tokenizer, tokeniser.special, tokeniser.limits);
    let rendered: Vec<(String, Vec<(usize, usize)>)> = trajectories
        .iter()
        .map(|(problem, steps)| render(prompt, problem, steps))
        .collect();
    let texts: Vec<&str> = rendered.iter().map(|(t, _)| t.as_str()).collect();
    let encodings = tokenizer
        .encode_batch(texts, prompt.add_special_tokens)
        .map_err(|e| e.to_string())?;
    Ok(encodings
        .iter()
        .zip(&rendered)
        .map(|(encoding, (_, ranges))| {
            let ids = encoding.get_ids();
            let offsets = encoding.get_offsets();
            let specials = encoding.get_special_tokens_mask();
            // the token holding byte `at` of the text (added tokens like a BOS hold none)
            let holding = |at: usize| {
                (0..ids.len())
                    .find(|&t| specials[t] == 0 && offsets[t].0 <= at && at < offsets[t].1)
                    .or_else(|| (0..ids.len()).find(|&t| offsets[t].0 <= at && at < offsets[t].1))
            };
            // the prefix is everything before the first step's text; the marker id `special.step`
            // is the token each step's text ends with (`import` chose the text so)
            let mut prefix: Vec<u32> = ids.to_vec();
            let mut steps: Vec<Vec<u32>> = Vec::with_capacity(ranges.len());
            let mut next = None;
            for &(start, end) in ranges {
                let (Some(first), Some(last)) = (holding(start), holding(end.saturating_sub(1)))
                else {
                    // an empty step text: nothing to read; keep the count right
                    steps.push(Vec::new());
                    continue;
                };
                let from = next.unwrap_or(first);
                if next.is_none() {
                    prefix = ids[..first].to_vec();
                }
                // the step's tokens without the one its score is read at (the marker)
                steps.push(ids[from.min(last)..last].to_vec());
                next = Some(last + 1);
            }
            build_windows(&prefix, &steps, special, limits)
        })
        .collect())
}

fn pieces(
    tokeniser: &Tokeniser,
    prompt: &PromptSpec,
    trajectories: &[(&str, &[String])],
) -> Result<Vec<TokenisedTrajectory>, String> {
    let mut texts: Vec<String> = Vec::new();
    for (problem, steps) in trajectories {
        let (text, ranges) = render(prompt, problem, steps);
        let first = ranges.first().map_or(text.len(), |r| r.0);
        texts.push(text[..first].to_string());
        texts.extend(ranges.iter().map(|&(a, b)| text[a..b].to_string()));
    }
    let counts: Vec<usize> = trajectories.iter().map(|(_, s)| s.len()).collect();
    super::encode_pieces(
        &tokeniser.tokenizer,
        texts,
        &counts,
        tokeniser.special,
        tokeniser.limits,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PromptSpec {
        PromptSpec {
            template: "<s>{problem}|".into(),
            step: "\nStep {index}: {step} #".into(),
            first_step: Some("Step {index}: {step} #".into()),
            step_label: None,
            trim: false,
            encoding: PromptEncoding::Whole,
            add_special_tokens: false,
        }
    }

    #[test]
    fn placeholders_in_the_data_are_never_filled() {
        let steps = vec!["a {problem} b".to_string(), "{step}".to_string()];
        let (text, ranges) = render(&spec(), "P {index}", &steps);
        assert_eq!(
            text,
            "<s>P {index}|Step 1: a {problem} b #\nStep 2: {step} #"
        );
        assert_eq!(&text[ranges[1].0..ranges[1].1], "\nStep 2: {step} #");
    }

    #[test]
    fn labels_are_added_unless_the_step_has_one() {
        let mut p = spec();
        p.step = "{step};".into();
        p.first_step = None;
        p.step_label = Some("Step {index}: ".into());
        p.trim = true;
        let steps = vec!["  x ".to_string(), "step 2: y".to_string()];
        let (text, _) = render(&p, "  P", &steps);
        assert_eq!(text, "<s>P|Step 1: x;step 2: y;");
    }
}
