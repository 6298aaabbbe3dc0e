//! A language model read at a step tag (Math-Shepherd, RLHFlow): the softmax over the logits of a
//! good and a bad token is `sigmoid((W[good] - W[bad]).h)`, one linear head. RLHFlow's input is
//! its chat template with each step a user turn answered by "+"; Math-Shepherd's is its model
//! card's "{question} Step 1: ... ки\nStep 2: ... ки".

use super::{DecoderFamily, FamilyHeads, FormatInput};
use crate::model::import::checkpoint::Checkpoint;
use crate::model::import::config::HfConfig;
use crate::model::import::heads::linear_logit;
use crate::model::import::prompt::{steps_as_turns, InputFormat};
use crate::model::import::ImportError;
use crate::model::manifest::{PromptEncoding, PromptSpec};

pub struct TokenHead;

impl DecoderFamily for TokenHead {
    fn detect(&self, _: &[String], weights: &Checkpoint) -> bool {
        weights.contains("lm_head.weight")
    }

    fn input_format(&self, input: &FormatInput<'_>) -> Result<InputFormat, ImportError> {
        if input.tokenizer_config.template.is_some() {
            // RLHFlow: each step a user turn answered by "+"; read where "+" would come
            let (prompt, marker_text) = steps_as_turns(input, "+")?;
            return Ok(InputFormat {
                prompt,
                marker: input.token(input.last_id(&marker_text)?),
                candidates: Some((input.last_id("+")?, input.last_id("-")?)),
            });
        }
        let pair = input
            .tokenizer
            .encode("+ -", false)
            .map_err(|e| ImportError::Unsupported(e.to_string()))?;
        let ids = pair.get_ids();
        if ids.len() < 2 {
            return Err(ImportError::Unsupported(format!(
                "{}: \"+ -\" is not two tokens",
                input.from.display()
            )));
        }
        Ok(InputFormat {
            prompt: PromptSpec {
                template: "{problem} ".into(),
                step: "\n{step} ки".into(),
                first_step: Some("{step} ки".into()),
                step_label: Some("Step {index}: ".into()),
                trim: false,
                encoding: PromptEncoding::Whole,
                add_special_tokens: true,
            },
            marker: input.token(input.last_id("ки")?),
            candidates: Some((ids[ids.len() - 2], ids[ids.len() - 1])),
        })
    }

    fn heads(
        &self,
        config: &HfConfig,
        weights: &Checkpoint,
        candidates: Option<(u32, u32)>,
    ) -> Result<FamilyHeads, ImportError> {
        let h = config.hidden_size;
        let (good, bad) = candidates.ok_or_else(|| {
            ImportError::Unsupported("a token-head PRM needs its two candidate tokens".into())
        })?;
        // the LM head's two rows: softmax over (good, bad) is sigmoid of their difference
        let name = if weights.contains("lm_head.weight") {
            "lm_head.weight"
        } else {
            "model.embed_tokens.weight"
        };
        let rows = match weights.shape(name)? {
            &[rows, _] if rows >= 1 => rows,
            shape => {
                return Err(weights.refuse(
                    name,
                    format!("has shape {shape:?}; a language model head is [vocab, {h}]"),
                ))
            }
        };
        let lm = weights.read_shaped(name, &[rows, h])?;
        let row = |id: u32| {
            let id = id as usize;
            lm.get(id * h..(id + 1) * h).ok_or_else(|| {
                weights.refuse(
                    name,
                    format!("has {rows} rows; the candidate token {id} is past them"),
                )
            })
        };
        let (g, b) = (row(good)?, row(bad)?);
        let u: Vec<f32> = g.iter().zip(b).map(|(x, y)| x - y).collect();
        let c = if weights.contains("lm_head.bias") {
            let bias = weights.read_shaped("lm_head.bias", &[rows])?;
            bias[good as usize] - bias[bad as usize]
        } else {
            0.0
        };
        let heads = linear_logit(&u, c);
        Ok((None, heads.clone(), heads))
    }
}
