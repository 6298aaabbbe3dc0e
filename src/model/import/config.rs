//! The decoder's shape from `config.json` (Qwen2, Llama and Mistral share it).

use std::path::Path;

use serde::Deserialize;

use super::{files, ImportError};

/// The largest sizes imported (about 4x the largest released decoders'), so a hostile
/// `config.json` cannot make actprm allocate before a tensor is read.
pub const MAX_HIDDEN: usize = 1 << 16;
pub const MAX_INTERMEDIATE: usize = 1 << 20;
pub const MAX_LAYERS: usize = 1024;
pub const MAX_HEADS: usize = 1024;
pub const MAX_HEAD_DIM: usize = 1024;
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_POSITIONS: usize = 1 << 24;
/// The shortest context a prompt, a problem and steps fit in.
pub const MIN_POSITIONS: usize = 128;
/// Heads in an ensemble.
pub const MAX_ENSEMBLE: usize = 1024;

/// `key` is `value`, refused outside `[min, max]`.
pub fn within(key: &str, value: usize, min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{key} is {value}; actprm imports {min} to {max}"))
    }
}

/// The sizes every transformer config has, each within what actprm imports (decoders and
/// encoders alike).
pub fn sizes_within(
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    vocab: usize,
) -> Result<(), String> {
    within("hidden_size", hidden, 1, MAX_HIDDEN)?;
    within("intermediate_size", intermediate, 1, MAX_INTERMEDIATE)?;
    within("num_hidden_layers", layers, 1, MAX_LAYERS)?;
    within("num_attention_heads", heads, 1, MAX_HEADS)?;
    within("vocab_size", vocab, 1, MAX_VOCAB)
}

/// `key` is `value`, refused unless a finite number above 0.
pub fn positive(key: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "{key} is {value}; it must be a finite number above 0"
        ))
    }
}

/// The keys actprm reads from a config object: name, what it holds, whether `null` stands for
/// absent.
pub type Keys<'a> = &'a [(&'a str, Kind, bool)];

/// What a key of a config file holds.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A whole number >= 0.
    Count,
    Number,
    Text,
    Flag,
    Texts,
    Object,
}

/// The keys actprm reads from a decoder's `config.json`, and whether `null` stands for absent.
const DECODER_KEYS: &[(&str, Kind, bool)] = &[
    ("architectures", Kind::Texts, false),
    ("model_type", Kind::Text, false),
    ("hidden_size", Kind::Count, false),
    ("intermediate_size", Kind::Count, false),
    ("num_hidden_layers", Kind::Count, false),
    ("num_attention_heads", Kind::Count, false),
    ("num_key_value_heads", Kind::Count, true),
    ("head_dim", Kind::Count, true),
    ("rms_norm_eps", Kind::Number, false),
    ("rope_theta", Kind::Number, false),
    ("rope_scaling", Kind::Object, true),
    ("max_position_embeddings", Kind::Count, false),
    ("vocab_size", Kind::Count, false),
    ("hidden_act", Kind::Text, false),
    ("tie_word_embeddings", Kind::Flag, false),
    ("num_ensemble", Kind::Count, true),
    ("rr_token", Kind::Text, true),
    ("rr_token_id", Kind::Count, true),
];

/// The keys of `rope_scaling`.
const ROPE_KEYS: &[(&str, Kind, bool)] = &[
    ("rope_type", Kind::Text, false),
    ("type", Kind::Text, false),
    ("factor", Kind::Number, false),
    ("low_freq_factor", Kind::Number, false),
    ("high_freq_factor", Kind::Number, false),
    ("original_max_position_embeddings", Kind::Count, false),
];

/// `config.json` in `dir`, each of `keys` (and of the objects named in `nested`, reported as
/// `parent.key`) type-checked before it is deserialised: the part of reading a checkpoint's
/// config that decoders and encoders share. Values are checked by the caller ([`invalid`] makes
/// its errors name the file).
pub fn read_typed<T: serde::de::DeserializeOwned>(
    dir: &Path,
    keys: Keys<'_>,
    nested: &[(&str, Keys<'_>)],
) -> Result<T, ImportError> {
    let path = dir.join("config.json");
    let value = files::read_json(&path)?;
    let bad = invalid(&path);
    check_types(&value, keys).map_err(&bad)?;
    for &(parent, keys) in nested {
        if let Some(object) = value.get(parent).filter(|v| v.is_object()) {
            check_types(object, keys).map_err(|m| bad(format!("{parent}.{m}")))?;
        }
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// An error about the file at `path`, from a message.
pub fn invalid(path: &Path) -> impl Fn(String) -> ImportError + '_ {
    move |message| ImportError::File {
        path: path.to_path_buf(),
        message,
    }
}

/// The first of `keys` whose value in `config` has the wrong type, as a message naming it.
fn check_types(config: &serde_json::Value, keys: &[(&str, Kind, bool)]) -> Result<(), String> {
    use serde_json::Value;
    let Some(map) = config.as_object() else {
        return Err(format!("is {}, not a JSON object", json_kind(config)));
    };
    for &(key, kind, nullable) in keys {
        let Some(v) = map.get(key) else { continue };
        let ok = match (kind, v) {
            (_, Value::Null) => nullable,
            (Kind::Count, v) => v.as_u64().is_some(),
            (Kind::Number, v) => v.is_number(),
            (Kind::Text, v) => v.is_string(),
            (Kind::Flag, v) => v.is_boolean(),
            (Kind::Texts, Value::Array(a)) => a.iter().all(Value::is_string),
            (Kind::Texts, _) => false,
            (Kind::Object, v) => v.is_object(),
        };
        if !ok {
            let expected = match kind {
                Kind::Count => "a whole number >= 0",
                Kind::Number => "a number",
                Kind::Text => "a string",
                Kind::Flag => "true or false",
                Kind::Texts => "a list of strings",
                Kind::Object => "an object",
            };
            let mut shown = v.to_string();
            if shown.len() > 60 {
                shown = format!("{}...", shown.chars().take(60).collect::<String>());
            }
            return Err(format!("{key} is {shown}; expected {expected}"));
        }
    }
    Ok(())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

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
    /// `config.json` of `dir`, every value checked before anything is built from it.
    pub fn read(dir: &Path) -> Result<Self, ImportError> {
        let config: Self = read_typed(dir, DECODER_KEYS, &[("rope_scaling", ROPE_KEYS)])?;
        let path = dir.join("config.json");
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
        config.check().map_err(invalid(&path))?;
        Ok(config)
    }

    /// The first value a decoder cannot be built from, as a message naming its key.
    fn check(&self) -> Result<(), String> {
        sizes_within(
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.vocab_size,
        )?;
        within(
            "max_position_embeddings",
            self.max_position_embeddings,
            MIN_POSITIONS,
            MAX_POSITIONS,
        )?;
        let heads = self.num_attention_heads;
        if let Some(kv) = self.num_key_value_heads {
            if kv == 0 || kv > heads || !heads.is_multiple_of(kv) {
                return Err(format!(
                    "num_key_value_heads is {kv}; it must be at least 1 and divide \
                     num_attention_heads ({heads})"
                ));
            }
        }
        match self.head_dim {
            Some(d) => {
                within("head_dim", d, 2, MAX_HEAD_DIM)?;
                if !d.is_multiple_of(2) {
                    return Err(format!(
                        "head_dim is {d}; rotary embeddings need an even one"
                    ));
                }
            }
            None => {
                let h = self.hidden_size;
                if !h.is_multiple_of(heads)
                    || !(h / heads).is_multiple_of(2)
                    || h / heads > MAX_HEAD_DIM
                {
                    return Err(format!(
                        "hidden_size {h} over num_attention_heads {heads} is no head width \
                         (without head_dim, heads x an even head width up to {MAX_HEAD_DIM} must \
                         make hidden_size)"
                    ));
                }
            }
        }
        positive("rms_norm_eps", self.rms_norm_eps)?;
        positive("rope_theta", self.rope_theta)?;
        if let Some(s) = self
            .rope_scaling
            .as_ref()
            .filter(|s| s.rope_type == "llama3")
        {
            positive("rope_scaling.factor", s.factor)?;
            positive("rope_scaling.low_freq_factor", s.low_freq_factor)?;
            positive("rope_scaling.high_freq_factor", s.high_freq_factor)?;
            if s.high_freq_factor <= s.low_freq_factor {
                return Err(format!(
                    "rope_scaling.high_freq_factor is {}; it must be above low_freq_factor ({})",
                    s.high_freq_factor, s.low_freq_factor
                ));
            }
            within(
                "rope_scaling.original_max_position_embeddings",
                s.original_max_position_embeddings,
                1,
                MAX_POSITIONS,
            )?;
        }
        if let Some(e) = self.num_ensemble {
            within("num_ensemble", e, 1, MAX_ENSEMBLE)?;
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
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
