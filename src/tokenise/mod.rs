//! Text -> token windows. The sequence is `[bos] problem [problem_end] step_1 [sep] step_2 [sep] ...`;
//! separator positions are recorded where they are inserted, so separator strings that appear inside
//! the problem or a step are never mistaken for step boundaries. Trajectories longer than the
//! backbone's context are split into windows that each repeat the problem, so every step is scored.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::model::backbone::BackboneInput;
use crate::model::manifest::PromptSpec;

mod prompt;
use crate::model::{LoadedModel, ModelError};

/// Token ids of the structural tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub problem_end: Option<u32>,
    pub step: u32,
    pub eos: Option<u32>,
}

/// Context limits applied when building windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    pub max_length: usize,
    pub max_problem_tokens: usize,
}

/// One backbone input sequence and the positions of the step separators in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub ids: Vec<i64>,
    pub separators: Vec<usize>,
    /// Tokens before the window's first step (`[bos] problem [problem_end]`, or the prompt).
    pub prefix: usize,
}

impl Window {
    /// The window as the backbone takes it.
    pub fn input(&self) -> BackboneInput<'_> {
        BackboneInput {
            ids: &self.ids,
            separators: &self.separators,
            prefix: self.prefix,
        }
    }
}

/// A trajectory ready for the backbone: its windows cover every step exactly once, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenisedTrajectory {
    pub windows: Vec<Window>,
    pub steps: usize,
    /// Problem or a step had to be cut to fit the context.
    pub truncated: bool,
    /// Tokens sent to the backbone (all windows).
    pub tokens: usize,
    /// The first step that states a false equality, when the arithmetic check is on (set by
    /// the tokenise stage, which has the text).
    pub check: Option<usize>,
}

impl TokenisedTrajectory {
    pub fn windowed(&self) -> bool {
        self.windows.len() > 1
    }
}

/// Packs tokenised pieces into windows of at most `limits.max_length` tokens.
pub fn build_windows(
    problem: &[u32],
    steps: &[Vec<u32>],
    special: SpecialTokens,
    limits: WindowLimits,
) -> TokenisedTrajectory {
    let mut truncated = problem.len() > limits.max_problem_tokens;
    let problem = &problem[..problem.len().min(limits.max_problem_tokens)];
    let mut prefix: Vec<i64> = Vec::with_capacity(problem.len() + 2);
    prefix.extend(special.bos.map(i64::from));
    prefix.extend(problem.iter().map(|&t| t as i64));
    prefix.extend(special.problem_end.map(i64::from));
    let suffix = special.eos.map(i64::from);
    // Room for steps in each window; at least one token of step text plus its separator.
    let budget = limits
        .max_length
        .saturating_sub(prefix.len() + usize::from(suffix.is_some()))
        .max(2);

    let mut windows = Vec::new();
    let mut current = Window {
        ids: prefix.clone(),
        separators: Vec::new(),
        prefix: prefix.len(),
    };
    let mut used = 0usize;
    for step in steps {
        // Keep the end of an over-long step: it is next to the separator that is read.
        let keep = step.len().min(budget - 1);
        truncated |= keep < step.len();
        let cost = keep + 1;
        if used + cost > budget && !current.separators.is_empty() {
            current.ids.extend(suffix);
            windows.push(std::mem::replace(
                &mut current,
                Window {
                    ids: prefix.clone(),
                    separators: Vec::new(),
                    prefix: prefix.len(),
                },
            ));
            used = 0;
        }
        current
            .ids
            .extend(step[step.len() - keep..].iter().map(|&t| t as i64));
        current.ids.push(special.step as i64);
        current.separators.push(current.ids.len() - 1);
        used += cost;
    }
    current.ids.extend(suffix);
    windows.push(current);
    let tokens = windows.iter().map(|w| w.ids.len()).sum();
    TokenisedTrajectory {
        windows,
        steps: steps.len(),
        truncated,
        tokens,
        check: None,
    }
}

/// A Hugging Face tokenizer with its own truncation and padding switched off (windows handle
/// length), and the model's structural tokens resolved to ids.
pub struct Tokeniser {
    tokenizer: Tokenizer,
    special: SpecialTokens,
    limits: WindowLimits,
    prompt: Option<PromptSpec>,
}

impl Tokeniser {
    pub fn for_model(model: &LoadedModel) -> Result<Self, ModelError> {
        model.check_tokenizer()?;
        let m = &model.manifest;
        let mut tokeniser = Self::from_file(
            &model.tokenizer_path,
            &m.separator.bos,
            &m.separator.problem_end,
            &m.separator.step,
            &m.separator.eos,
            WindowLimits {
                max_length: m.max_length,
                max_problem_tokens: m.max_problem_tokens,
            },
        )?;
        if let Some(prompt) = &m.prompt {
            prompt::check(prompt).map_err(|message| ModelError::Manifest {
                path: model.dir.clone().unwrap_or_default().join("manifest.json"),
                message,
            })?;
        }
        tokeniser.prompt = m.prompt.clone();
        Ok(tokeniser)
    }

    pub fn from_file(
        path: &Path,
        bos: &Option<String>,
        problem_end: &Option<String>,
        step: &str,
        eos: &Option<String>,
        limits: WindowLimits,
    ) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| err(e.to_string()))?;
        tokenizer.with_padding(None);
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| err(format!("has no token {token:?} (named in the manifest)")))
        };
        let special = SpecialTokens {
            bos: bos.as_deref().map(id).transpose()?,
            problem_end: problem_end.as_deref().map(id).transpose()?,
            step: id(step)?,
            eos: eos.as_deref().map(id).transpose()?,
        };
        if limits.max_problem_tokens + 4 > limits.max_length {
            return Err(err(format!(
                "max_problem_tokens {} leaves no room for steps in max_length {}",
                limits.max_problem_tokens, limits.max_length
            )));
        }
        Ok(Self {
            tokenizer,
            special,
            limits,
            prompt: None,
        })
    }

    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// Tokenises many trajectories in one call (the tokenizer parallelises internally).
    pub fn encode(
        &self,
        trajectories: &[(&str, &[String])],
    ) -> Result<Vec<TokenisedTrajectory>, String> {
        if let Some(prompt) = &self.prompt {
            return prompt::encode(self, prompt, trajectories);
        }
        let mut texts: Vec<&str> = Vec::new();
        for (problem, steps) in trajectories {
            texts.push(problem);
            texts.extend(steps.iter().map(String::as_str));
        }
        let counts: Vec<usize> = trajectories.iter().map(|(_, s)| s.len()).collect();
        encode_pieces(&self.tokenizer, texts, &counts, self.special, self.limits)
    }
}

/// Encodes each trajectory's texts on their own (its head, then `counts[i]` steps, flattened in
/// `texts`) and packs them into windows with the structural tokens between them.
fn encode_pieces<'t>(
    tokenizer: &Tokenizer,
    texts: Vec<impl Into<tokenizers::InputSequence<'t>> + Send>,
    counts: &[usize],
    special: SpecialTokens,
    limits: WindowLimits,
) -> Result<Vec<TokenisedTrajectory>, String> {
    let texts: Vec<tokenizers::EncodeInput<'t>> = texts
        .into_iter()
        .map(|t| tokenizers::EncodeInput::Single(t.into()))
        .collect();
    let encodings = tokenizer
        .encode_batch_fast(texts, false)
        .map_err(|e| e.to_string())?;
    let mut pieces = encodings.into_iter().map(|e| e.get_ids().to_vec());
    Ok(counts
        .iter()
        .map(|&n| {
            let head = pieces.next().unwrap_or_default();
            let steps: Vec<Vec<u32>> = (0..n).map(|_| pieces.next().unwrap_or_default()).collect();
            build_windows(&head, &steps, special, limits)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECIAL: SpecialTokens = SpecialTokens {
        bos: Some(101),
        problem_end: Some(102),
        step: 102,
        eos: None,
    };

    #[test]
    fn separators_follow_each_step_after_the_problem() {
        let t = build_windows(
            &[5, 6, 7],
            &[vec![10, 11], vec![12]],
            SPECIAL,
            WindowLimits {
                max_length: 64,
                max_problem_tokens: 32,
            },
        );
        assert_eq!(t.windows.len(), 1);
        assert_eq!(
            t.windows[0].ids,
            vec![101, 5, 6, 7, 102, 10, 11, 102, 12, 102]
        );
        assert_eq!(t.windows[0].separators, vec![7, 9]);
        assert!(!t.truncated);
    }

    #[test]
    fn long_trajectories_split_into_windows_that_repeat_the_problem() {
        let steps: Vec<Vec<u32>> = (0..5).map(|i| vec![20 + i; 3]).collect();
        // prefix 4 tokens, budget 12 - 4 = 8: two steps (4 tokens each) per window.
        let t = build_windows(
            &[5, 6],
            &steps,
            SPECIAL,
            WindowLimits {
                max_length: 12,
                max_problem_tokens: 4,
            },
        );
        assert_eq!(t.windows.len(), 3);
        assert_eq!(
            t.windows.iter().map(|w| w.separators.len()).sum::<usize>(),
            5
        );
        for w in &t.windows {
            assert_eq!(&w.ids[..4], &[101, 5, 6, 102]);
            assert!(w.ids.len() <= 12);
            for &s in &w.separators {
                assert_eq!(w.ids[s], 102);
            }
        }
        assert_eq!(t.windows[2].ids, vec![101, 5, 6, 102, 24, 24, 24, 102]);
    }

    #[test]
    fn over_long_step_keeps_its_end_and_is_flagged() {
        let t = build_windows(
            &[5],
            &[(0..20).collect()],
            SPECIAL,
            WindowLimits {
                max_length: 10,
                max_problem_tokens: 4,
            },
        );
        assert!(t.truncated);
        assert_eq!(
            t.windows[0].ids,
            vec![101, 5, 102, 14, 15, 16, 17, 18, 19, 102]
        );
    }
}
