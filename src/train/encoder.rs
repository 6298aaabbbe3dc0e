//! The BERT encoder of a backbone actprm writes itself (the default MiniLM) as libtorch tensors,
//! read from the same fp32 `model.safetensors` the ONNX graph writer reads and computing what
//! that graph computes at f32, so its top layers can be fine-tuned with the heads and written back
//! as safetensors for the graph writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use super::TrainError;
use crate::model::backbone::{pad, BackboneInput};
use crate::model::import::encoder::{read_config, BertConfig};

/// Added to the attention scores of padding keys (softmax then gives them no weight).
const MASKED_SCORE: f64 = -1e4;

pub struct TchEncoder {
    config: BertConfig,
    /// The checkpoint's float tensors by their Hugging Face names.
    params: BTreeMap<String, Tensor>,
    /// The top layers that learn; the embeddings learn too when this covers every layer.
    trainable_layers: usize,
    /// The weights folder it was read from (its `config.json` travels with saved weights).
    source: PathBuf,
    device: Device,
    /// Each token attends to its own and earlier steps only, as the step-causal ONNX graph.
    step_causal: bool,
}

fn torch(path: &Path) -> impl Fn(tch::TchError) -> TrainError + '_ {
    move |e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl TchEncoder {
    /// Reads `config.json` and `model.safetensors` from `weights_dir`; the top
    /// `trainable_layers` layers (at most all of them) take gradients.
    pub fn open(
        weights_dir: &Path,
        trainable_layers: usize,
        device: Device,
        step_causal: bool,
    ) -> Result<Self, TrainError> {
        let config = read_config(weights_dir).map_err(|e| TrainError::Checkpoint {
            path: weights_dir.join("config.json"),
            message: e.to_string(),
        })?;
        if config.hidden_act != "gelu" || config.hidden_size % config.num_attention_heads != 0 {
            return Err(TrainError::Checkpoint {
                path: weights_dir.join("config.json"),
                message: format!(
                    "a BERT encoder with gelu and a hidden size divisible by the heads is \
                     trained; this has {:?}, hidden {}, {} heads",
                    config.hidden_act, config.hidden_size, config.num_attention_heads
                ),
            });
        }
        let file = weights_dir.join("model.safetensors");
        let trainable_layers = trainable_layers.min(config.num_hidden_layers);
        let mut params = BTreeMap::new();
        for (name, tensor) in Tensor::read_safetensors(&file).map_err(torch(&file))? {
            if !tensor.is_floating_point() {
                continue; // `embeddings.position_ids` is an index table, not a weight
            }
            let learns = match layer_of(&name) {
                Some(layer) => layer + trainable_layers >= config.num_hidden_layers,
                None => trainable_layers == config.num_hidden_layers,
            };
            let tensor = tensor.to_kind(Kind::Float).to_device(device);
            params.insert(name, tensor.set_requires_grad(learns));
        }
        let encoder = Self {
            config,
            params,
            trainable_layers,
            source: weights_dir.to_path_buf(),
            device,
            step_causal,
        };
        for name in encoder.required_names() {
            if !encoder.params.contains_key(&name) {
                return Err(TrainError::Checkpoint {
                    path: file,
                    message: format!("has no tensor {name}"),
                });
            }
        }
        Ok(encoder)
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub fn trainable_layers(&self) -> usize {
        self.trainable_layers
    }

    /// The tensors that take gradients with their names, in name order (they share storage
    /// with the encoder's own: updating them updates it).
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect()
    }

    fn required_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["word", "position", "token_type"]
            .iter()
            .map(|e| format!("embeddings.{e}_embeddings.weight"))
            .collect();
        names.extend(["weight", "bias"].map(|p| format!("embeddings.LayerNorm.{p}")));
        for layer in 0..self.config.num_hidden_layers {
            for part in [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ] {
                for p in ["weight", "bias"] {
                    names.push(format!("encoder.layer.{layer}.{part}.{p}"));
                }
            }
        }
        names
    }

    fn get(&self, name: &str) -> &Tensor {
        &self.params[name]
    }

    /// The hidden state at every separator of `windows` (window by window), `[separators, H]`.
    /// `train` switches dropout on; frozen layers always run without gradients or dropout.
    pub fn separator_features(&self, windows: &[BackboneInput<'_>], train: bool) -> Tensor {
        let padded = pad(windows, self.step_causal);
        let (batch, seq) = (padded.batch as i64, padded.seq as i64);
        let positions: Vec<i64> = windows
            .iter()
            .enumerate()
            .flat_map(|(b, w)| w.separators.iter().map(move |&p| b as i64 * seq + p as i64))
            .collect();
        let ids = Tensor::from_slice(&padded.ids)
            .reshape([batch, seq])
            .to_device(self.device);
        let mask = Tensor::from_slice(&padded.mask)
            .to_kind(Kind::Float)
            .reshape([batch, 1, 1, seq])
            .to_device(self.device);
        // added to the attention scores: padding keys, and (step-causal) keys of later steps;
        // `[B, 1, 1, S]` grows to `[B, 1, S, S]`, so not in place
        let padding = (mask.ones_like() - mask) * MASKED_SCORE;
        let scores_mask = if let Some(steps) = &padded.steps {
            let steps = Tensor::from_slice(steps)
                .reshape([batch, seq])
                .to_device(self.device);
            let later = steps
                .unsqueeze(1)
                .gt_tensor(&steps.unsqueeze(2))
                .to_kind(Kind::Float)
                .unsqueeze(1);
            padding + later * MASKED_SCORE
        } else {
            padding
        };
        let hidden = self.hidden_states(&ids, &scores_mask, train);
        let index = Tensor::from_slice(&positions).to_device(self.device);
        hidden
            .reshape([batch * seq, self.config.hidden_size as i64])
            .index_select(0, &index)
    }

    /// `last_hidden_state [B, S, H]` for `ids [B, S]` and the scores' additive mask
    /// (`[B, 1, 1, S]` or `[B, 1, S, S]`).
    fn hidden_states(&self, ids: &Tensor, scores_mask: &Tensor, train: bool) -> Tensor {
        let layers = self.config.num_hidden_layers;
        let frozen = layers - self.trainable_layers;
        let embed = || self.embeddings(ids, train && frozen == 0);
        let mut x = if frozen == 0 {
            embed()
        } else {
            tch::no_grad(embed)
        };
        for layer in 0..layers {
            x = if layer < frozen {
                tch::no_grad(|| self.layer(layer, &x, scores_mask, false))
            } else {
                self.layer(layer, &x, scores_mask, train)
            };
        }
        x
    }

    fn embeddings(&self, ids: &Tensor, train: bool) -> Tensor {
        let (batch, seq) = ids.size2().expect("ids are [batch, seq]");
        let h = self.config.hidden_size as i64;
        let word = self
            .get("embeddings.word_embeddings.weight")
            .index_select(0, &ids.reshape([-1]))
            .reshape([batch, seq, h]);
        let position = self
            .get("embeddings.position_embeddings.weight")
            .narrow(0, 0, seq)
            .unsqueeze(0);
        // every token is of type 0, as the scorer feeds it
        let token_type = self
            .get("embeddings.token_type_embeddings.weight")
            .narrow(0, 0, 1)
            .unsqueeze(0);
        let x = word + position + token_type;
        self.layer_norm(&x, "embeddings.LayerNorm")
            .dropout(self.config.hidden_dropout_prob, train)
    }

    fn layer_norm(&self, x: &Tensor, name: &str) -> Tensor {
        x.layer_norm(
            [self.config.hidden_size as i64],
            Some(self.get(&format!("{name}.weight"))),
            Some(self.get(&format!("{name}.bias"))),
            self.config.layer_norm_eps,
            false,
        )
    }

    fn linear(&self, x: &Tensor, name: &str) -> Tensor {
        x.linear(
            self.get(&format!("{name}.weight")),
            Some(self.get(&format!("{name}.bias"))),
        )
    }

    fn layer(&self, layer: usize, x: &Tensor, scores_mask: &Tensor, train: bool) -> Tensor {
        let p = |rest: &str| format!("encoder.layer.{layer}.{rest}");
        let (batch, seq, h) = x.size3().expect("hidden states are [batch, seq, hidden]");
        let heads = self.config.num_attention_heads as i64;
        let head_dim = h / heads;
        let split = |t: Tensor| t.reshape([batch, seq, heads, head_dim]).transpose(1, 2);
        let q = split(self.linear(x, &p("attention.self.query")));
        let k = split(self.linear(x, &p("attention.self.key")));
        let v = split(self.linear(x, &p("attention.self.value")));
        let scores = q.matmul(&k.transpose(-1, -2)) / (head_dim as f64).sqrt() + scores_mask;
        let attention = scores
            .softmax(-1, Kind::Float)
            .dropout(self.config.attention_probs_dropout_prob, train);
        let context = attention
            .matmul(&v)
            .transpose(1, 2)
            .contiguous()
            .reshape([batch, seq, h]);
        let out = self
            .linear(&context, &p("attention.output.dense"))
            .dropout(self.config.hidden_dropout_prob, train);
        let attended = self.layer_norm(&(out + x), &p("attention.output.LayerNorm"));
        let up = self
            .linear(&attended, &p("intermediate.dense"))
            .gelu("none");
        let down = self
            .linear(&up, &p("output.dense"))
            .dropout(self.config.hidden_dropout_prob, train);
        self.layer_norm(&(down + &attended), &p("output.LayerNorm"))
    }

    /// Writes the current weights as `model.safetensors` with the source's `config.json` into
    /// `dir`, the layout the graph writer builds a backbone from.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let io = |path: PathBuf| {
            move |e: std::io::Error| TrainError::Checkpoint {
                path,
                message: e.to_string(),
            }
        };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let config = self.source.join("config.json");
        std::fs::copy(&config, dir.join("config.json")).map_err(io(config))?;
        let tensors: Vec<(&str, Tensor)> = self
            .params
            .iter()
            .map(|(name, t)| (name.as_str(), t.detach().to_device(Device::Cpu)))
            .collect();
        let file = dir.join("model.safetensors");
        Tensor::write_safetensors(&tensors, &file).map_err(torch(&file))
    }
}

/// `encoder.layer.N.…` -> N; `None` for the embeddings.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("encoder.layer.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::layer_of;

    #[test]
    fn layers_are_read_from_tensor_names() {
        assert_eq!(
            layer_of("encoder.layer.11.attention.self.query.weight"),
            Some(11)
        );
        assert_eq!(layer_of("embeddings.word_embeddings.weight"), None);
    }
}
