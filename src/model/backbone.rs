//! The frozen backbone: any ONNX graph with the contract
//! `input_ids, attention_mask [, token_type_ids] (int64 [batch, seq]) -> last_hidden_state (float [batch, seq, D])`
//! (documented in `schemas/backbone-contract.md`). Returns the hidden state at each step separator.

use ort::session::Session;
use ort::value::{TensorRef, ValueType};

use super::execution::{open_session, GraphSource, RuntimeOptions};
use super::{LoadedModel, ModelError};

pub const INPUT_IDS: &str = "input_ids";
pub const ATTENTION_MASK: &str = "attention_mask";
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";

pub struct Backbone {
    session: Session,
    with_token_types: bool,
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
        for required in [INPUT_IDS, ATTENTION_MASK] {
            if !inputs.contains(&required) {
                return Err(contract(format!(
                    "has no input {required:?} (inputs: {inputs:?})"
                )));
            }
        }
        if let Some(extra) = inputs
            .iter()
            .find(|n| ![INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS].contains(n))
        {
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
            session,
            hidden: model.manifest.hidden_size,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs one padded batch and gathers the hidden state at every separator: the result holds,
    /// window by window and separator by separator, `D` floats each.
    pub fn separator_features(
        &mut self,
        windows: &[(&[i64], &[usize])],
    ) -> Result<Vec<f32>, ModelError> {
        let Padded {
            batch,
            seq,
            ids,
            mask,
        } = pad(windows);
        let types = vec![
            0i64;
            if self.with_token_types {
                batch * seq
            } else {
                0
            }
        ];
        let shape = [batch, seq];
        let tensor = |data| {
            TensorRef::from_array_view((shape, data)).map_err(ModelError::ort("backbone input"))
        };
        let outputs = if self.with_token_types {
            self.session.run(ort::inputs![
                INPUT_IDS => tensor(&ids[..])?,
                ATTENTION_MASK => tensor(&mask[..])?,
                TOKEN_TYPE_IDS => tensor(&types[..])?,
            ])
        } else {
            self.session.run(
                ort::inputs![INPUT_IDS => tensor(&ids[..])?, ATTENTION_MASK => tensor(&mask[..])?],
            )
        }
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
        let mut features =
            Vec::with_capacity(windows.iter().map(|(_, s)| s.len()).sum::<usize>() * d);
        for (b, (_, separators)) in windows.iter().enumerate() {
            for &pos in separators.iter() {
                let start = (b * seq + pos) * d;
                features.extend_from_slice(&hidden_states[start..start + d]);
            }
        }
        Ok(features)
    }
}

/// Windows as one batch, padded with id 0 to the longest: `[batch, seq]` row-major.
pub struct Padded {
    pub batch: usize,
    pub seq: usize,
    pub ids: Vec<i64>,
    /// 1 for a token, 0 for padding.
    pub mask: Vec<i64>,
}

/// Pads `windows` (ids, separator positions) into one batch; the ONNX backbone and the trainable
/// encoder feed the same layout.
pub fn pad(windows: &[(&[i64], &[usize])]) -> Padded {
    let batch = windows.len();
    let seq = windows.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut ids = vec![0i64; batch * seq];
    let mut mask = vec![0i64; batch * seq];
    for (b, (w, _)) in windows.iter().enumerate() {
        ids[b * seq..b * seq + w.len()].copy_from_slice(w);
        mask[b * seq..b * seq + w.len()].fill(1);
    }
    Padded {
        batch,
        seq,
        ids,
        mask,
    }
}
