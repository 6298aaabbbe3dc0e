//! Qwen2ForEnsemblePRM (sail/ActPRM, ActPRM-X): Qwen's input, and E heads that are exactly
//! actprm's, with the regularisation anchors ActPRM trains against.

use super::{DecoderFamily, FamilyHeads, FormatInput};
use crate::model::heads::HIDDEN;
use crate::model::import::checkpoint::Checkpoint;
use crate::model::import::config::{HfConfig, MAX_ENSEMBLE};
use crate::model::import::heads::ensemble;
use crate::model::import::prompt::{steps_in_one_turn, InputFormat};
use crate::model::import::ImportError;

pub struct Actprm;

impl DecoderFamily for Actprm {
    fn detect(&self, architectures: &[String], weights: &Checkpoint) -> bool {
        architectures.iter().any(|a| a == "Qwen2ForEnsemblePRM")
            || weights.contains("score.model.nn1.weight")
    }

    fn input_format(&self, input: &FormatInput<'_>) -> Result<InputFormat, ImportError> {
        steps_in_one_turn(input)
    }

    fn heads(
        &self,
        config: &HfConfig,
        weights: &Checkpoint,
        _: Option<(u32, u32)>,
    ) -> Result<FamilyHeads, ImportError> {
        let h = config.hidden_size;
        let first = "score.model.nn1.weight";
        let e = match weights.shape(first)? {
            &[e, _, _] if (1..=MAX_ENSEMBLE).contains(&e) => e,
            shape => {
                return Err(weights.refuse(
                    first,
                    format!(
                        "has shape {shape:?}; ActPRM's first head layer is [E, {h}, \
                         {HIDDEN}] with E from 1 to {MAX_ENSEMBLE}"
                    ),
                ))
            }
        };
        let heads = ensemble(weights, "score.model", e, h)?;
        // the regularisation anchors become the trainer's, as ActPRM trains them
        let anchors = if weights.contains("score.reg_model.nn1.weight") {
            ensemble(weights, "score.reg_model", e, h)?
        } else {
            heads.clone()
        };
        Ok((None, heads, anchors))
    }
}
