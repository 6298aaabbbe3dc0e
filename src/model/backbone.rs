//! The frozen backbone: any ONNX graph with the contract
//! `input_ids, attention_mask [, token_type_ids] [, step_index | position_ids, attention_bias] (int64 [batch, seq]; attention_bias float [batch, seq, seq]) -> last_hidden_state (float [batch, seq, D])`
//! (documented in `schemas/backbone-contract.md`). Returns the hidden state at each step separator.
//! A graph that takes `step_index` is step-causal: each token attends to the prompt and to the
//! tokens of its own and earlier steps, so a step's feature never sees the steps after it.

use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use super::execution::{open_session, GraphSource, RuntimeOptions};
use super::manifest::Attention;
use super::{LoadedModel, ModelError};

pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";
/// Per token: 0 in the prompt, k in step k (its separator included), past the last step the
/// step count + 1; padding gets [`PADDING_STEP`].
pub const STEP_INDEX: &str = "step_index";
/// The step index of padding: after every real token, so no real token attends to it.
pub const PADDING_STEP: i64 = i64::MAX;
/// Per token: its position in its own sequence (a packed tree: its depth). Decoder graphs
/// take it with [`ATTENTION_BIAS`].
pub const POSITION_IDS: &str = "position_ids";
/// f32 `[batch, seq, seq]`, added to the attention scores: 0 where a query may attend to a key,
/// [`BLOCKED`] elsewhere. With it the host says which tokens see which, so one graph runs a
/// padded batch (causal) and a packed token tree (ancestors only).
pub const ATTENTION_BIAS: &str = "attention_bias";
/// The bias of a key a query may not attend to (finite: a row never becomes NaN).
pub const BLOCKED: f32 = -1e9;

/// A sequence as a token tree: a token attends to its ancestors and itself, at the position
/// `positions` gives. A window is a chain (each token's parent is the one before it); a packed
/// trie of windows shares their common prefixes.
#[derive(Debug, Clone, Copy)]
pub struct TreeInput<'a> {
    pub ids: &'a [i64],
    pub positions: &'a [i64],
    /// Each token's parent; a parent comes before its children.
    pub parents: &'a [Option<u32>],
}

/// One window as the backbone takes it: token ids, the separator positions whose hidden states
/// are the step features, and how many leading tokens are the prompt (before the first step).
#[derive(Debug, Clone, Copy)]
pub struct BackboneInput<'a> {
    pub ids: &'a [i64],
    pub separators: &'a [usize],
    pub prefix: usize,
}

impl BackboneInput<'_> {
    /// The step each token belongs to, as the `step_index` input gives it.
    pub fn step_index(&self) -> Vec<i64> {
        let mut step = 1i64;
        let mut separators = self.separators.iter().peekable();
        (0..self.ids.len())
            .map(|t| {
                if t < self.prefix {
                    return 0;
                }
                let here = step;
                while separators.next_if(|&&s| s <= t).is_some() {
                    step += 1;
                }
                here
            })
            .collect()
    }
}

pub struct Backbone {
    session: Session,
    with_token_types: bool,
    with_step_index: bool,
    /// The graph takes [`POSITION_IDS`] and [`ATTENTION_BIAS`]: token trees can be packed.
    with_trees: bool,
    hidden: usize,
}

impl Backbone {
    pub fn open(model: &LoadedModel, options: &RuntimeOptions) -> Result<Self, ModelError> {
        let path = &model.check_files(options.device)?;
        let session = open_session(GraphSource::File(path), "the backbone", options)?;
        let contract = |message: String| ModelError::Contract {
            path: path.clone(),
            message,
        };
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let takes_steps = inputs.contains(&STEP_INDEX);
        match (model.manifest.attention, takes_steps) {
            (Some(Attention::StepCausal), false) => {
                return Err(contract(format!(
                    "has no input {STEP_INDEX:?}, but the manifest says attention \"step-causal\" \
                     (inputs: {inputs:?})"
                )))
            }
            (Some(other @ (Attention::Bidirectional | Attention::Causal)), true) => {
                return Err(contract(format!(
                    "takes {STEP_INDEX:?} (a step-causal graph), but the manifest says attention \
                     {:?}",
                    other.name()
                )))
            }
            _ => {}
        }
        for required in [INPUT_IDS, ATTENTION_MASK] {
            if !inputs.contains(&required) {
                return Err(contract(format!(
                    "has no input {required:?} (inputs: {inputs:?})"
                )));
            }
        }
        let with_trees = inputs.contains(&POSITION_IDS) && inputs.contains(&ATTENTION_BIAS);
        if inputs.contains(&POSITION_IDS) != inputs.contains(&ATTENTION_BIAS)
            || (with_trees && takes_steps)
        {
            return Err(contract(format!(
                "takes {POSITION_IDS:?} and {ATTENTION_BIAS:?} together or neither, and not with \
                 {STEP_INDEX:?} (inputs: {inputs:?})"
            )));
        }
        if with_trees && model.manifest.attention != Some(Attention::Causal) {
            return Err(contract(format!(
                "takes packed token trees ({ATTENTION_BIAS:?}), which only a causal backbone \
                 can: the manifest must say attention \"causal\""
            )));
        }
        if let Some(extra) = inputs.iter().find(|n| {
            ![
                INPUT_IDS,
                ATTENTION_MASK,
                TOKEN_TYPE_IDS,
                STEP_INDEX,
                POSITION_IDS,
                ATTENTION_BIAS,
            ]
            .contains(n)
        }) {
            return Err(contract(format!(
                "has an input {extra:?} outside the contract (inputs: {inputs:?})"
            )));
        }
        let output = session
            .outputs()
            .iter()
            .find(|o| o.name() == LAST_HIDDEN_STATE)
            .ok_or_else(|| contract(format!("has no output {LAST_HIDDEN_STATE:?}")))?;
        if let ValueType::Tensor { shape, .. } = output.dtype() {
            let dims: &[i64] = shape;
            if dims.len() != 3 {
                return Err(contract(format!(
                    "{LAST_HIDDEN_STATE} has rank {}, expected 3",
                    dims.len()
                )));
            }
            if dims[2] > 0 && dims[2] as usize != model.manifest.hidden_size {
                return Err(contract(format!(
                    "hidden size is {}, the manifest says {}",
                    dims[2], model.manifest.hidden_size
                )));
            }
        }
        Ok(Self {
            with_token_types: inputs.contains(&TOKEN_TYPE_IDS),
            with_step_index: takes_steps,
            with_trees,
            session,
            hidden: model.manifest.hidden_size,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Whether the graph runs packed token trees ([`Self::tree_features`]): a causal decoder
    /// imported with positions and an attention bias as inputs.
    pub fn takes_trees(&self) -> bool {
        self.with_trees
    }

    /// Runs one padded batch and gathers the hidden state at every separator: the result holds,
    /// window by window and separator by separator, `D` floats each.
    pub fn separator_features(
        &mut self,
        windows: &[BackboneInput<'_>],
    ) -> Result<Vec<f32>, ModelError> {
        if self.with_trees {
            // each window as a chain: positions 0, 1, 2, ..., each token after its predecessor
            let longest = windows.iter().map(|w| w.ids.len()).max().unwrap_or(0);
            let positions: Vec<i64> = (0..longest as i64).collect();
            let parents: Vec<Option<u32>> = (0..longest)
                .map(|i| i.checked_sub(1).map(|p| p as u32))
                .collect();
            let trees: Vec<TreeInput<'_>> = windows
                .iter()
                .map(|w| TreeInput {
                    ids: w.ids,
                    positions: &positions[..w.ids.len()],
                    parents: &parents[..w.ids.len()],
                })
                .collect();
            let gathers: Vec<Vec<u32>> = windows
                .iter()
                .map(|w| w.separators.iter().map(|&s| s as u32).collect())
                .collect();
            return self.tree_features(&trees, &gathers);
        }
        let Padded {
            batch,
            seq,
            ids,
            mask,
            steps,
        } = pad(windows, self.with_step_index);
        let shape = [batch, seq];
        let tensor = |data| {
            TensorRef::from_array_view((shape, data)).map_err(ModelError::ort("backbone input"))
        };
        let mut inputs = ort::inputs![
            INPUT_IDS => tensor(&ids[..])?,
            ATTENTION_MASK => tensor(&mask[..])?,
        ];
        if let Some(steps) = &steps {
            inputs.push((STEP_INDEX.into(), tensor(&steps[..])?.into()));
        }
        let at = windows
            .iter()
            .enumerate()
            .flat_map(|(b, w)| w.separators.iter().map(move |&pos| (b, pos)));
        self.run_gathering(inputs, (batch, seq), at)
    }

    /// Runs the graph on `inputs` (`[batch, seq]` tokens; zero `token_type_ids` are added for a
    /// graph that takes them) and gathers the hidden state (`D` floats) at each
    /// `(row, position)` of `at`, in order.
    fn run_gathering(
        &mut self,
        mut inputs: Vec<(
            std::borrow::Cow<'_, str>,
            ort::session::SessionInputValue<'_>,
        )>,
        (batch, seq): (usize, usize),
        at: impl Iterator<Item = (usize, usize)>,
    ) -> Result<Vec<f32>, ModelError> {
        if self.with_token_types {
            let types = ort::value::Tensor::from_array(([batch, seq], vec![0i64; batch * seq]))
                .map_err(ModelError::ort("backbone input"))?;
            inputs.push((TOKEN_TYPE_IDS.into(), types.into()));
        }
        let outputs = self
            .session
            .run(inputs)
            .map_err(ModelError::ort("running the backbone"))?;
        let (out_shape, hidden_states) = outputs[LAST_HIDDEN_STATE]
            .try_extract_tensor::<f32>()
            .map_err(ModelError::ort("reading last_hidden_state"))?;
        let d = self.hidden;
        if out_shape.len() != 3 || out_shape[2] as usize != d || out_shape[1] as usize != seq {
            return Err(ModelError::Ort {
                context: "backbone output".into(),
                message: format!(
                    "last_hidden_state has shape {out_shape:?}, expected [{batch}, {seq}, {d}]"
                ),
            });
        }
        let mut features = Vec::new();
        for (b, pos) in at {
            let start = (b * seq + pos) * d;
            features.extend_from_slice(&hidden_states[start..start + d]);
        }
        // an f16 graph that overflowed would pass NaN scores on without a word
        if let Some(at) = features.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::Ort {
                context: "backbone output".into(),
                message: format!(
                    "a step's hidden state holds {} (dimension {}): the model overflowed (an \
                     f16 import: import it again with --dtype f32; an f32 model that overflows \
                     has broken weights)",
                    features[at],
                    at % d
                ),
            });
        }
        Ok(features)
    }

    /// Runs token trees as one padded batch and gathers the hidden state at the nodes
    /// `gather[b]` of tree `b`: `D` floats per node, tree by tree.
    pub fn tree_features(
        &mut self,
        trees: &[TreeInput<'_>],
        gather: &[Vec<u32>],
    ) -> Result<Vec<f32>, ModelError> {
        let tokens: Vec<BackboneInput<'_>> = trees
            .iter()
            .map(|t| BackboneInput {
                ids: t.ids,
                separators: &[],
                prefix: 0,
            })
            .collect();
        let Padded {
            batch,
            seq,
            ids,
            mask,
            ..
        } = pad(&tokens, false);
        let mut positions = vec![0i64; batch * seq];
        for (b, tree) in trees.iter().enumerate() {
            positions[b * seq..b * seq + tree.ids.len()].copy_from_slice(tree.positions);
        }
        let bias = tree_bias(trees, seq);
        let shape = [batch, seq];
        let tensor = |data| {
            TensorRef::from_array_view((shape, data)).map_err(ModelError::ort("backbone input"))
        };
        let bias = TensorRef::from_array_view(([batch, seq, seq], &bias[..]))
            .map_err(ModelError::ort("backbone input"))?;
        let inputs = ort::inputs![
            INPUT_IDS => tensor(&ids[..])?,
            ATTENTION_MASK => tensor(&mask[..])?,
            POSITION_IDS => tensor(&positions[..])?,
            ATTENTION_BIAS => bias,
        ];
        let at = gather
            .iter()
            .enumerate()
            .flat_map(|(b, nodes)| nodes.iter().map(move |&node| (b, node as usize)));
        self.run_gathering(inputs, (batch, seq), at)
    }
}

/// The attention bias of a batch of trees, `[batch, seq, seq]`: row `i` of a tree opens its
/// ancestors and itself (the parent's row, plus `i`); a padding row opens only itself.
pub fn tree_bias(trees: &[TreeInput<'_>], seq: usize) -> Vec<f32> {
    let mut bias = vec![BLOCKED; trees.len() * seq * seq];
    for (b, tree) in trees.iter().enumerate() {
        let base = b * seq * seq;
        for i in 0..seq {
            let row = base + i * seq;
            if let Some(Some(parent)) = tree.parents.get(i) {
                let from = base + *parent as usize * seq;
                bias.copy_within(from..from + tree.ids.len(), row);
            }
            bias[row + i] = 0.0;
        }
    }
    bias
}

/// Windows as one batch, padded with id 0 to the longest: `[batch, seq]` row-major.
pub struct Padded {
    pub batch: usize,
    pub seq: usize,
    pub ids: Vec<i64>,
    /// 1 for a token, 0 for padding.
    pub mask: Vec<i64>,
    /// With `steps`: each token's step ([`BackboneInput::step_index`]), [`PADDING_STEP`] for
    /// padding; only step-causal graphs take it.
    pub steps: Option<Vec<i64>>,
}

/// Pads `windows` into one batch (and their step indices, when `steps`); the ONNX backbone and
/// the trainable encoder feed the same layout.
pub fn pad(windows: &[BackboneInput<'_>], steps: bool) -> Padded {
    let batch = windows.len();
    let seq = windows.iter().map(|w| w.ids.len()).max().unwrap_or(0);
    let mut ids = vec![0i64; batch * seq];
    let mut mask = vec![0i64; batch * seq];
    let mut step_index = steps.then(|| vec![PADDING_STEP; batch * seq]);
    for (b, w) in windows.iter().enumerate() {
        let row = b * seq..b * seq + w.ids.len();
        ids[row.clone()].copy_from_slice(w.ids);
        mask[row.clone()].fill(1);
        if let Some(s) = step_index.as_mut() {
            s[row].copy_from_slice(&w.step_index());
        }
    }
    let steps = step_index;
    Padded {
        batch,
        seq,
        ids,
        mask,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_index_puts_each_separator_in_its_own_step() {
        // [CLS] p p [SEP] | a a [SEP] | b [SEP] | eos
        let ids = [101, 5, 6, 102, 7, 8, 102, 9, 102, 3];
        let input = BackboneInput {
            ids: &ids,
            separators: &[6, 8],
            prefix: 4,
        };
        assert_eq!(input.step_index(), vec![0, 0, 0, 0, 1, 1, 1, 2, 2, 3]);
        let padded = pad(
            &[
                input,
                BackboneInput {
                    ids: &ids[..3],
                    separators: &[],
                    prefix: 3,
                },
            ],
            true,
        );
        let steps = padded.steps.unwrap();
        assert_eq!(&steps[10..13], &[0, 0, 0]);
        assert!(steps[13..].iter().all(|&s| s == PADDING_STEP));
    }
}
