//! Trajectories as text to their step scores: the model's tokeniser, the arithmetic check and the
//! scorer, applied as a run's tokenise and score stages apply them. `eval` and SQL's `prm_score`
//! score through [`TextScorer`]; the tokenise stage runs [`tokenise_checked`] (it sits on its own
//! thread ahead of the scorer), so every path turns text into model input one way.

use super::check::{first_false_under, CheckRule};
use super::{RowScore, ScoreOptions, StepScorer};
use crate::model::{LoadedModel, ModelError, RuntimeOptions};
use crate::tokenise::{TokenisedTrajectory, Tokeniser};

/// `(problem, steps)` tokenised, each with the arithmetic check's verdict under `check`; the
/// tokenizer's refusal as its message.
pub fn tokenise_checked(
    tokeniser: &Tokeniser,
    check: CheckRule,
    rows: &[(&str, &[String])],
) -> Result<Vec<TokenisedTrajectory>, String> {
    let mut tokenised = tokeniser.encode(rows)?;
    for (t, (_, steps)) in tokenised.iter_mut().zip(rows) {
        t.check = first_false_under(check, steps);
    }
    Ok(tokenised)
}

/// Why text could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum TextScoreError {
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A model opened to score trajectories given as text.
pub struct TextScorer {
    pub tokeniser: Tokeniser,
    /// The arithmetic check the model's manifest and the options ask for.
    pub check: CheckRule,
    pub scorer: StepScorer,
}

impl TextScorer {
    pub fn open(
        model: &LoadedModel,
        runtime: &RuntimeOptions,
        options: ScoreOptions,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            tokeniser: Tokeniser::for_model(model)?,
            check: options.check_rule(&model.manifest),
            scorer: StepScorer::open(model, runtime, options)?,
        })
    }

    /// Each row's scores, and the step features they came from (`[steps, hidden]` per row, in
    /// row order).
    pub fn score(
        &mut self,
        rows: &[(&str, &[String])],
    ) -> Result<(Vec<RowScore>, Vec<f32>), TextScoreError> {
        let tokenised = tokenise_checked(&self.tokeniser, self.check, rows)
            .map_err(TextScoreError::Tokenizer)?;
        Ok(self.scorer.score(&tokenised)?)
    }
}
