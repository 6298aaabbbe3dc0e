//! The prompts sent to the judge. Two built-in formats (ACTPRM.md's paragraph critique and the
//! ProcessBench "earliest error in \boxed{}" question); a user template replaces the wording but
//! keeps the format's paragraph tags and parser.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::JudgeError;

/// Which answer shape the judge is asked for; decides the paragraph numbering and the parser.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PromptFormat {
    /// Paragraphs tagged 1..n, one `<analysis_i>` each up to the first error, `<conclusion>`.
    #[default]
    Critique,
    /// Paragraphs tagged 0..n-1, the earliest wrong index (or -1) in `\boxed{}`.
    #[value(name = "processbench")]
    ProcessBench,
}

impl PromptFormat {
    fn first_index(self) -> usize {
        match self {
            Self::Critique => 1,
            Self::ProcessBench => 0,
        }
    }

    fn builtin(self) -> &'static str {
        match self {
            Self::Critique => CRITIQUE,
            Self::ProcessBench => PROCESSBENCH,
        }
    }
}

const CRITIQUE: &str = "The following is a math problem and a proposed solution. The solution is split into \
paragraphs, each enclosed in tags and numbered from 1.

[Math Problem]

{problem}

[Solution]

{paragraphs}

Review the solution paragraph by paragraph, in order. For each paragraph i, write your analysis inside \
<analysis_i>...</analysis_i>, checking its reasoning and its calculations. Stop at the first paragraph that \
contains an error: do not analyse any paragraph after it. Then write your conclusion inside \
<conclusion>...</conclusion>: Correct if every paragraph is correct, Incorrect otherwise.";

const PROCESSBENCH: &str = "The following is a math problem and a solution (split into paragraphs, enclosed with \
tags and indexed from 0):

[Math Problem]

{problem}

[Solution]

{paragraphs}

Your task is to review and critique the solution paragraph by paragraph. Once you identify an error in a \
paragraph, return the index of the paragraph where the earliest error occurs. Otherwise, return the index of -1 \
(which typically denotes \"not found\").

Please put your final answer (i.e., the index) in \\boxed{}.";

/// A ready template: the format plus the wording (`{problem}` and `{paragraphs}` placeholders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub format: PromptFormat,
    template: String,
}

impl Prompt {
    pub fn builtin(format: PromptFormat) -> Self {
        Self {
            format,
            template: format.builtin().to_string(),
        }
    }

    /// A user template; refused up front if a placeholder is missing (every request would be useless).
    pub fn from_template(
        format: PromptFormat,
        template: String,
        origin: &Path,
    ) -> Result<Self, JudgeError> {
        for needed in ["{problem}", "{paragraphs}"] {
            if !template.contains(needed) {
                return Err(JudgeError::Config(format!(
                    "template {}: no {needed} placeholder",
                    origin.display()
                )));
            }
        }
        Ok(Self { format, template })
    }

    pub fn load(format: PromptFormat, file: Option<&Path>) -> Result<Self, JudgeError> {
        match file {
            None => Ok(Self::builtin(format)),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    JudgeError::Config(format!("reading template {}: {e}", path.display()))
                })?;
                Self::from_template(format, text, path)
            }
        }
    }

    /// The user message. Placeholders are substituted in one pass, so a problem that happens to
    /// contain `{paragraphs}` is left alone.
    pub fn render(&self, problem: &str, steps: &[String]) -> String {
        let first = self.format.first_index();
        let paragraphs = steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("<paragraph_{n}>\n{s}\n</paragraph_{n}>", n = i + first))
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut out = String::with_capacity(self.template.len() + problem.len() + paragraphs.len());
        let mut rest = self.template.as_str();
        loop {
            let next = [
                ("{problem}", problem),
                ("{paragraphs}", paragraphs.as_str()),
            ]
            .into_iter()
            .filter_map(|(p, v)| rest.find(p).map(|i| (i, p, v)))
            .min_by_key(|&(i, _, _)| i);
            match next {
                Some((i, placeholder, value)) => {
                    out.push_str(&rest[..i]);
                    out.push_str(value);
                    rest = &rest[i + placeholder.len()..];
                }
                None => {
                    out.push_str(rest);
                    return out;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critique_tags_paragraphs_from_one() {
        let p = Prompt::builtin(PromptFormat::Critique).render("2+2?", &["a".into(), "b".into()]);
        assert!(p.contains("2+2?"));
        assert!(
            p.contains("<paragraph_1>\na\n</paragraph_1>\n\n<paragraph_2>\nb\n</paragraph_2>"),
            "{p}"
        );
        assert!(p.contains("<conclusion>"));
    }

    #[test]
    fn processbench_tags_paragraphs_from_zero() {
        let p = Prompt::builtin(PromptFormat::ProcessBench).render("q", &["a".into()]);
        assert!(p.contains("<paragraph_0>\na\n</paragraph_0>"), "{p}");
        assert!(p.contains("\\boxed{}"));
    }

    #[test]
    fn placeholders_inside_the_problem_are_not_expanded() {
        let t = Prompt::from_template(
            PromptFormat::Critique,
            "P: {problem} S: {paragraphs}".into(),
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(
            t.render("{paragraphs}", &["x".into()]),
            "P: {paragraphs} S: <paragraph_1>\nx\n</paragraph_1>"
        );
        assert!(
            Prompt::from_template(PromptFormat::Critique, "{problem}".into(), Path::new("t"))
                .is_err()
        );
    }
}
