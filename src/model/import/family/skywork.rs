//! Qwen2ForPrmModel (Skywork-o1-Open-PRM-Qwen-2.5-1.5B / 7B): no chat template (BOS, the
//! problem, a line break, then the steps, each read at its last line break) and a linear value
//! head.

use super::{DecoderFamily, FamilyHeads, FormatInput};
use crate::model::import::checkpoint::Checkpoint;
use crate::model::import::config::HfConfig;
use crate::model::import::heads::linear_logit;
use crate::model::import::prompt::InputFormat;
use crate::model::import::ImportError;
use crate::model::manifest::{PromptEncoding, PromptSpec};

pub struct Skywork;

impl DecoderFamily for Skywork {
    fn detect(&self, architectures: &[String], weights: &Checkpoint) -> bool {
        architectures.iter().any(|a| a == "Qwen2ForPrmModel")
            || weights.contains("v_head.summary.weight")
    }

    fn input_format(&self, input: &FormatInput<'_>) -> Result<InputFormat, ImportError> {
        // SkyworkAI/skywork-o1-prm-inference io_utils.prepare_input: no chat template
        let bos = input.tokenizer_config.bos_token.clone().unwrap_or_default();
        Ok(InputFormat {
            prompt: PromptSpec {
                template: format!("{bos}{{problem}}\n"),
                step: "{step}".into(),
                first_step: None,
                step_label: None,
                trim: false,
                encoding: PromptEncoding::Pieces,
                add_special_tokens: false,
            },
            marker: input.token(input.last_id("\n")?),
            candidates: None,
        })
    }

    fn heads(
        &self,
        config: &HfConfig,
        weights: &Checkpoint,
        _: Option<(u32, u32)>,
    ) -> Result<FamilyHeads, ImportError> {
        let h = config.hidden_size;
        let v = weights.read_shaped("v_head.summary.weight", &[1, h])?;
        let b = weights.read_shaped("v_head.summary.bias", &[1])?;
        let heads = linear_logit(&v, b[0]);
        Ok((None, heads.clone(), heads))
    }
}
