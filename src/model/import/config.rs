//! The decoder's shape from `config.json` (Qwen2, Llama and Mistral share it).

use std::path::Path;

use serde::Deserialize;

use super::ImportError;

#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// ActPRM: heads in the ensemble, and its step token.
    pub num_ensemble: Option<usize>,
    pub rr_token: Option<String>,
    pub rr_token_id: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_positions")]
    pub original_max_position_embeddings: usize,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}
fn default_positions() -> usize {
    4096
}
fn default_act() -> String {
    "silu".into()
}
fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}

impl HfConfig {
    pub fn read(dir: &Path) -> Result<Self, ImportError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(ImportError::io(&path))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| ImportError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if config.hidden_act != "silu" {
            return Err(ImportError::Unsupported(format!(
                "{}: hidden_act {:?}; decoders with SiLU MLPs are imported",
                path.display(),
                config.hidden_act
            )));
        }
        if let Some(s) = &config.rope_scaling {
            if !matches!(s.rope_type.as_str(), "default" | "llama3") {
                return Err(ImportError::Unsupported(format!(
                    "{}: rope_scaling type {:?}; default and llama3 are imported",
                    path.display(),
                    s.rope_type
                )));
            }
        }
        Ok(config)
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// RoPE inverse frequencies (`head_dim / 2` of them), with Llama 3's scaling when configured,
    /// computed as transformers does.
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim();
        let base: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / dim as f64))
            .collect();
        let Some(s) = self
            .rope_scaling
            .as_ref()
            .filter(|s| s.rope_type == "llama3")
        else {
            return base.iter().map(|&f| f as f32).collect();
        };
        let old = s.original_max_position_embeddings as f64;
        let low_wavelen = old / s.low_freq_factor;
        let high_wavelen = old / s.high_freq_factor;
        base.iter()
            .map(|&f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let scaled = if wavelen > low_wavelen {
                    f / s.factor
                } else {
                    f
                };
                let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                let out = if medium {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * scaled / s.factor + smooth * scaled
                } else {
                    scaled
                };
                out as f32
            })
            .collect()
    }
}
