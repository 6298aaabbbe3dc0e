//! Qwen2ForProcessRewardModel (Qwen2.5-Math-PRM-7B/72B, Qwen2.5-Math-7B-PRM800K): the chat
//! template with every step followed by `<extra_0>`; a two-layer head whose first layer goes into
//! the backbone and whose two-class softmax is `sigmoid(l1 - l0)`.

use super::{DecoderFamily, FamilyHeads, FormatInput};
use crate::model::import::checkpoint::Checkpoint;
use crate::model::import::config::HfConfig;
use crate::model::import::decoder::FeatureLayer;
use crate::model::import::heads::linear_logit;
use crate::model::import::prompt::{steps_in_one_turn, InputFormat};
use crate::model::import::ImportError;

pub struct QwenPrm;

impl DecoderFamily for QwenPrm {
    fn detect(&self, architectures: &[String], weights: &Checkpoint) -> bool {
        architectures
            .iter()
            .any(|a| a == "Qwen2ForProcessRewardModel")
            || weights.contains("score.2.weight")
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
        let w0 = weights.read_shaped("score.0.weight", &[h, h])?;
        let b0 = weights.read_shaped("score.0.bias", &[h])?;
        let w2 = weights.read_shaped("score.2.weight", &[2, h])?;
        let b2 = weights.read_shaped("score.2.bias", &[2])?;
        let u: Vec<f32> = (0..h).map(|i| w2[h + i] - w2[i]).collect();
        let heads = linear_logit(&u, b2[1] - b2[0]);
        let layer = FeatureLayer {
            weight: w0,
            bias: b0,
            out: h,
        };
        Ok((Some(layer), heads.clone(), heads))
    }
}
