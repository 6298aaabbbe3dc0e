//! The PRM families actprm imports, one file each. A decoder family says how its checkpoints are
//! recognised, how its reference code builds the input (a manifest prompt and the step marker)
//! and what its head is (actprm heads, and a layer folded into the backbone); the shared decoder
//! writer (`decoder.rs`) does the rest. A BERT encoder is the backbone of the embedded default's
//! heads (`bert_encoder.rs`). A new decoder family is its file and its lines here.

mod actprm;
pub(super) mod bert_encoder;
mod qwen_prm;
mod skywork;
mod token_head;

use std::path::Path;

use serde::Serialize;
use tokenizers::Tokenizer;

use super::checkpoint::Checkpoint;
use super::config::HfConfig;
use super::decoder::FeatureLayer;
use super::prompt::{InputFormat, TokenizerConfig};
use super::ImportError;
use crate::model::heads::HeadsWeights;

/// The PRM families actprm reads, by how they score a step (`actprm import --format`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Read `architectures` and the head's tensor names.
    #[default]
    Auto,
    /// Qwen2ForProcessRewardModel (Qwen2.5-Math-PRM-7B/72B, Qwen2.5-Math-7B-PRM800K).
    QwenPrm,
    /// Qwen2ForEnsemblePRM (sail/ActPRM, ActPRM-X): E heads, exactly actprm's.
    Actprm,
    /// Qwen2ForPrmModel (Skywork-o1-Open-PRM-Qwen-2.5-1.5B / 7B).
    Skywork,
    /// A language model read at a step tag (Math-Shepherd, RLHFlow).
    TokenHead,
    /// A BERT sentence encoder (all-MiniLM-L6-v2) as the backbone of the embedded default heads.
    BertEncoder,
}

/// Decoder families in the order auto-detection tries them (the first that claims a checkpoint
/// is its family).
const DECODERS: [Family; 4] = [
    Family::QwenPrm,
    Family::Actprm,
    Family::Skywork,
    Family::TokenHead,
];

impl Family {
    /// The name users type (`--format`).
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// The family's decoder parts (`None`: not a decoder family, or not yet detected).
    pub(super) fn decoder(self) -> Option<&'static dyn DecoderFamily> {
        match self {
            Family::QwenPrm => Some(&qwen_prm::QwenPrm),
            Family::Actprm => Some(&actprm::Actprm),
            Family::Skywork => Some(&skywork::Skywork),
            Family::TokenHead => Some(&token_head::TokenHead),
            Family::Auto | Family::BertEncoder => None,
        }
    }
}

/// What a decoder PRM family adds to the shared decoder writer.
pub(super) trait DecoderFamily: Sync {
    /// Whether a checkpoint is this family's, by its `architectures` or its head's tensor names.
    fn detect(&self, architectures: &[String], weights: &Checkpoint) -> bool;

    /// The input as the family's reference code builds it, and where each step is scored.
    fn input_format(&self, input: &FormatInput<'_>) -> Result<InputFormat, ImportError>;

    /// The family's head as actprm heads, given the token ids `input_format` chose (token
    /// heads read two candidates).
    fn heads(
        &self,
        config: &HfConfig,
        weights: &Checkpoint,
        candidates: Option<(u32, u32)>,
    ) -> Result<FamilyHeads, ImportError>;
}

/// A family's head: the layer folded into the backbone (if any), the heads, and their anchors.
pub(super) type FamilyHeads = (Option<FeatureLayer>, HeadsWeights, HeadsWeights);

/// The decoder family of a checkpoint, from its `architectures`, else its head's tensor names.
pub(super) fn detect(config: &HfConfig, weights: &Checkpoint) -> Result<Family, ImportError> {
    DECODERS
        .into_iter()
        .find(|f| {
            f.decoder()
                .is_some_and(|d| d.detect(&config.architectures, weights))
        })
        .ok_or_else(|| {
            ImportError::Unsupported(format!(
                "cannot tell the PRM family of architectures {:?}: pass --format qwen-prm, \
                 actprm, skywork or token-head",
                config.architectures
            ))
        })
}

/// What a family reads to build its input format: the tokenizer, its config, the model config.
pub(super) struct FormatInput<'a> {
    pub tokenizer: &'a Tokenizer,
    pub tokenizer_config: TokenizerConfig,
    pub config: &'a HfConfig,
    pub from: &'a Path,
}

impl FormatInput<'_> {
    /// The id of the last token `text` encodes to.
    pub fn last_id(&self, text: &str) -> Result<u32, ImportError> {
        self.tokenizer
            .encode(text, false)
            .ok()
            .and_then(|e| e.get_ids().last().copied())
            .ok_or_else(|| {
                ImportError::Unsupported(format!(
                    "{}: the tokenizer encodes {text:?} to nothing",
                    self.from.display()
                ))
            })
    }

    /// The token with id `id` ("" when the vocabulary has none).
    pub fn token(&self, id: u32) -> String {
        self.tokenizer.id_to_token(id).unwrap_or_default()
    }
}
