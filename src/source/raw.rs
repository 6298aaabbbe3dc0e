//! Released step-labelled data in the layouts it ships in, for `actprm convert`:
//! - **PRM800K raw** (OpenAI's JSONL: `question.problem`, `label.steps[].completions[].rating`,
//!   `chosen_completion`, `human_completion`; also pretty-printed values one after another),
//! - **Math-Shepherd raw** (`input` with each step ending in the tag ` ки`, `label` the same text
//!   with each tag replaced by `+` or `-`),
//! - and every layout `jsonl::parse_record` reads (ProcessBench, PRM800K trajectories,
//!   BIG-Bench-Mistake, MR-GSM8K, TRL stepwise supervision).
//!
//! A record that cannot be converted is returned as a reject with its line and reason, never
//! dropped and never a reason to stop the other records.

use std::path::Path;

use serde_json::Value;

use super::jsonl::{parse_record, LabelledTrajectory};
use super::SourceError;

/// A record `convert` could not turn into a trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct RawReject {
    pub file: String,
    /// 1-based line where the record starts.
    pub line: usize,
    pub reason: String,
}

/// A converted record and the record's own other fields (every field but `id`, `problem`,
/// `steps` and `label`, the columns `convert` writes), which `convert` keeps beside them.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedRecord {
    pub trajectory: LabelledTrajectory,
    /// A JSON object (empty for a record that is not one).
    pub fields: Value,
}

/// The names `convert` writes itself; a record's own field of one of these names gives way.
pub const CONVERTED_COLUMNS: [&str; 4] = ["id", "problem", "steps", "label"];

/// Every record of a JSON Lines file, or of a file of JSON values one after another (PRM800K's
/// pretty-printed examples), or of one JSON array (ProcessBench).
pub fn convert_file(path: &Path) -> Result<(Vec<ConvertedRecord>, Vec<RawReject>), SourceError> {
    let text = std::fs::read_to_string(path).map_err(|e| SourceError::File {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("record")
        .to_string();
    let mut records = Vec::new();
    let mut rejects = Vec::new();
    let mut add = |line: usize, index: usize, value: Result<Value, String>| {
        let converted = value.and_then(|v| {
            let mut trajectory = convert_record(&v)?;
            trajectory
                .id
                .get_or_insert_with(|| format!("{stem}-{index}"));
            let mut fields = match v {
                Value::Object(o) => o,
                _ => serde_json::Map::new(),
            };
            fields.retain(|k, _| !CONVERTED_COLUMNS.contains(&k.as_str()));
            Ok(ConvertedRecord {
                trajectory,
                fields: Value::Object(fields),
            })
        });
        match converted {
            Ok(r) => records.push(r),
            Err(reason) => rejects.push(RawReject {
                file: path.display().to_string(),
                line,
                reason,
            }),
        }
    };
    let first_line_is_a_value = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| serde_json::from_str::<Value>(l).is_ok());
    if first_line_is_a_value && !text.trim_start().starts_with('[') {
        // JSON Lines: a broken line is one reject, the others go on
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value = serde_json::from_str::<Value>(line)
                .map_err(|e| format!("not JSON (column {}): {e}", e.column()));
            // the line index is the record's ordinal: ids stay stable when a line is rejected
            add(i + 1, i, value);
        }
    } else {
        // offsets only grow: count the newlines since the last one (a rescan from the start for
        // every record made pretty-printed files quadratic)
        let mut counted = (0usize, 1usize);
        let mut line_of = |offset: usize| {
            let (from, line) = counted;
            let line = line + text[from..offset].matches('\n').count();
            counted = (offset, line);
            line
        };
        let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        let mut index = 0;
        loop {
            let start = stream.byte_offset();
            match stream.next() {
                None => break,
                Some(Ok(Value::Array(items))) => {
                    for item in items {
                        add(line_of(start), index, Ok(item));
                        index += 1;
                    }
                }
                Some(Ok(v)) => {
                    let skip = text[start..].len() - text[start..].trim_start().len();
                    add(line_of(start + skip), index, Ok(v));
                    index += 1;
                }
                Some(Err(e)) => {
                    // past a syntax error the values cannot be told apart: stop with its line
                    return Err(SourceError::Line {
                        file: path.to_path_buf(),
                        line: e.line(),
                        message: format!("column {}: {e}", e.column()),
                    });
                }
            }
        }
    }
    Ok((records, rejects))
}

/// One record in any supported layout.
pub fn convert_record(value: &Value) -> Result<LabelledTrajectory, String> {
    let obj = value.as_object().ok_or("record is not a JSON object")?;
    if obj.get("label").and_then(|l| l.get("steps")).is_some() {
        return prm800k_raw(value);
    }
    if let (Some(Value::String(input)), Some(Value::String(label))) =
        (obj.get("input"), obj.get("label"))
    {
        return math_shepherd(input, label);
    }
    parse_record(value)
}

/// PRM800K's released schema. The trajectory follows the chosen completion of each step. At a
/// step without one (the labeller found an error, gave up, or wrote a human step), the first
/// completion rated -1 ends the trajectory as its first error; without such a completion the
/// trajectory ends before that step (a human-written step is not model output). Ratings: the
/// first -1 on the chosen path is the first error; 0 is neutral.
pub fn prm800k_raw(value: &Value) -> Result<LabelledTrajectory, String> {
    let problem = value
        .pointer("/question/problem")
        .and_then(Value::as_str)
        .ok_or("no question.problem string")?
        .to_string();
    let steps = value
        .pointer("/label/steps")
        .and_then(Value::as_array)
        .ok_or("label.steps is not a list")?;
    let mut texts = Vec::new();
    let mut label = -1;
    for (i, step) in steps.iter().enumerate() {
        let completions = step
            .get("completions")
            .and_then(Value::as_array)
            .ok_or(format!("label.steps[{i}].completions is not a list"))?;
        let rating = |c: &Value| c.get("rating").and_then(Value::as_i64);
        let text = |c: &Value, j: usize| {
            c.get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(format!(
                    "label.steps[{i}].completions[{j}].text is not a string"
                ))
        };
        let chosen = match step.get("chosen_completion") {
            Some(Value::Null) | None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|j| usize::try_from(j).ok())
                    .filter(|&j| j < completions.len())
                    .ok_or(format!(
                        "label.steps[{i}].chosen_completion {v} names no completion"
                    ))?,
            ),
        };
        match chosen {
            Some(j) => {
                texts.push(text(&completions[j], j)?);
                if rating(&completions[j]) == Some(-1) {
                    label = i as i32;
                    break;
                }
            }
            None => {
                if let Some(j) = completions.iter().position(|c| rating(c) == Some(-1)) {
                    texts.push(text(&completions[j], j)?);
                    label = i as i32;
                }
                break;
            }
        }
    }
    if texts.is_empty() {
        return Err("no step was chosen or rated -1: nothing labelled to keep".into());
    }
    Ok(LabelledTrajectory {
        id: None,
        problem,
        steps: texts,
        label: Some(label),
        error_steps: None,
    })
}

const SHEPHERD_TAG: &str = "ки";

/// Math-Shepherd's layout: the problem, then `Step 1: ... ки\nStep 2: ... ки`; `label` is the
/// same text with each tag replaced by `+` (correct) or `-`. The first `-` is the first error;
/// the `Step k:` prefixes are removed from the step texts.
pub fn math_shepherd(input: &str, label: &str) -> Result<LabelledTrajectory, String> {
    let parts: Vec<&str> = input.split(SHEPHERD_TAG).collect();
    if parts.len() < 2 {
        return Err(format!("input has no step tag {SHEPHERD_TAG:?}"));
    }
    let mut rest = label;
    let mut first_error = -1;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        rest = rest.strip_prefix(part).ok_or(format!(
            "label text differs from input before step tag {}",
            i + 1
        ))?;
        let verdict = rest
            .chars()
            .next()
            .ok_or(format!("label text ends before step tag {}", i + 1))?;
        match verdict {
            '+' => {}
            '-' if first_error < 0 => first_error = i as i32,
            '-' => {}
            other => {
                return Err(format!(
                    "step {} is labelled {other:?}, expected + or -",
                    i + 1
                ))
            }
        }
        rest = &rest[verdict.len_utf8()..];
    }
    if rest != parts[parts.len() - 1] {
        return Err("label text differs from input after the last step tag".into());
    }
    let start = parts[0]
        .find("Step 1:")
        .ok_or("no \"Step 1:\" where the solution starts")?;
    let problem = parts[0][..start].trim().to_string();
    let mut steps = vec![parts[0][start..].to_string()];
    steps.extend(parts[1..parts.len() - 1].iter().map(|s| s.to_string()));
    let steps: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            s.strip_prefix(&format!("Step {}:", i + 1))
                .unwrap_or(s)
                .trim()
                .to_string()
        })
        .collect();
    if problem.is_empty() || steps.iter().any(String::is_empty) {
        return Err("an empty problem or step".into());
    }
    Ok(LabelledTrajectory {
        id: None,
        problem,
        steps,
        label: Some(first_error),
        error_steps: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn math_shepherd_tags_become_a_first_error() {
        let input = "What is 2+3*4? Step 1: 3*4 = 12. ки\nStep 2: 2+12 = 15. ки\nStep 3: The answer is: 15 ки";
        let label =
            "What is 2+3*4? Step 1: 3*4 = 12. +\nStep 2: 2+12 = 15. -\nStep 3: The answer is: 15 -";
        let t = math_shepherd(input, label).unwrap();
        assert_eq!(t.problem, "What is 2+3*4?");
        assert_eq!(
            t.steps,
            vec!["3*4 = 12.", "2+12 = 15.", "The answer is: 15"]
        );
        assert_eq!(t.label, Some(1));
        let all_good = label.replace('-', "+");
        assert_eq!(math_shepherd(input, &all_good).unwrap().label, Some(-1));
        assert!(math_shepherd(input, &label.replace("15. -", "15. ?"))
            .unwrap_err()
            .contains("expected + or -"));
        assert!(math_shepherd(input, "other text").is_err());
        assert!(math_shepherd("no tags", "no tags").is_err());
    }
}
