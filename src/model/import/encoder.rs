//! A BERT encoder (all-MiniLM-L6-v2, the default backbone) as an ONNX graph written from its
//! fp32 weights: embeddings (word + position + token type, LayerNorm), then per layer the dense
//! products with ONNX Runtime's fused kernels around them (MultiHeadAttention with the padding
//! mask, SkipLayerNormalization for bias + residual + LayerNorm, BiasGelu), CPU and CUDA alike.
//! With `Precision::Int8Rows` (the CPU default) every dense layer's weights are s8 per output
//! channel and its input is quantised per token (u8, the token's own scale), so a row's
//! features never depend on its batch; `Int8` quantises the whole input with one scale per call.

use std::path::Path;

use serde::Deserialize;

use super::checkpoint::Checkpoint;
use super::dense::{product, Precision};
use super::ImportError;
use crate::model::backbone::{
    ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, STEP_INDEX, TOKEN_TYPE_IDS,
};
use crate::model::onnx::proto::DTYPE_INT32;
use crate::model::onnx::{Attr, Graph};

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: String,
    /// Dropout while fine-tuning (the graph, for inference, has none).
    #[serde(default)]
    pub hidden_dropout_prob: f64,
    #[serde(default)]
    pub attention_probs_dropout_prob: f64,
}

fn default_eps() -> f64 {
    1e-12
}

/// Writes `file_name` in `dir` (its weights in `file_name.data` beside it when `external`):
/// `input_ids, attention_mask, token_type_ids [, step_index] -> last_hidden_state [batch, seq,
/// hidden]`. `step_causal`: the graph takes `step_index` and each token attends only to tokens
/// of its own or an earlier step (the prompt is step 0), one pass per window. The bytes depend
/// only on the weights, the precision and the mask, so a written graph can be pinned by hash.
pub fn write_encoder(
    config: &BertConfig,
    weights: &Checkpoint,
    precision: Precision,
    step_causal: bool,
    dir: &Path,
    file_name: &str,
    external: bool,
) -> Result<(), ImportError> {
    if config.hidden_act != "gelu" {
        return Err(ImportError::Unsupported(format!(
            "BERT hidden_act {:?}; gelu is written",
            config.hidden_act
        )));
    }
    let h = config.hidden_size;
    let heads = config.num_attention_heads;
    let data = dir.join(format!("{file_name}.data"));
    let mut g = Graph::new(external.then_some(data.as_path()))?;
    let one = g.ints("c_one", &[], &[1]);
    let zero = g.ints("c_zero", &[], &[0]);
    let shape = g.op("Shape", &[INPUT_IDS], &[]);
    let seq = g.op("Gather", &[&shape, &one], &[("axis", Attr::Int(0))]);
    let positions = g.op("Range", &[&zero, &seq, &one], &[]);
    let read = |name: &str, shape: &[usize]| weights.read_shaped(name, shape);
    let word = read("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
    let word = g.floats("word_embeddings", &[config.vocab_size, h], &word)?;
    let pos = read(
        "embeddings.position_embeddings.weight",
        &[config.max_position_embeddings, h],
    )?;
    let pos = g.floats(
        "position_embeddings",
        &[config.max_position_embeddings, h],
        &pos,
    )?;
    let types = read(
        "embeddings.token_type_embeddings.weight",
        &[config.type_vocab_size, h],
    )?;
    let types = g.floats(
        "token_type_embeddings",
        &[config.type_vocab_size, h],
        &types,
    )?;
    let e_word = g.op("Gather", &[&word, INPUT_IDS], &[("axis", Attr::Int(0))]);
    let e_pos = g.op("Gather", &[&pos, &positions], &[("axis", Attr::Int(0))]);
    let e_type = g.op(
        "Gather",
        &[&types, TOKEN_TYPE_IDS],
        &[("axis", Attr::Int(0))],
    );
    let x = g.op("Add", &[&e_word, &e_pos], &[]);
    let x = g.op("Add", &[&x, &e_type], &[]);
    let eps = config.layer_norm_eps as f32;
    let mut x = layer_norm(&mut g, weights, &x, "embeddings.LayerNorm", h, eps)?;
    // ONNX Runtime's fused kernels (CPU and CUDA) take the place of the elementwise chains:
    // MultiHeadAttention (bias, scaling, padding mask, softmax), SkipLayerNormalization (bias +
    // residual + LayerNorm) and BiasGelu; the dense products are all that is left outside them.
    let key_padding = g.op(
        "Cast",
        &[ATTENTION_MASK],
        &[("to", Attr::Int(DTYPE_INT32 as i64))],
    );
    let step_bias = step_causal.then(|| step_causal_bias(&mut g)).transpose()?;
    for layer in 0..config.num_hidden_layers {
        let p = |rest: &str| format!("encoder.layer.{layer}.{rest}");
        let project = |g: &mut Graph, x: &str, name: &str, input: usize, output: usize| {
            product(g, weights, x, &p(name), input, output, precision)
        };
        let q = project(&mut g, &x, "attention.self.query", h, h)?;
        let k = project(&mut g, &x, "attention.self.key", h, h)?;
        let v = project(&mut g, &x, "attention.self.value", h, h)?;
        let mut qkv_bias = Vec::with_capacity(3 * h);
        for part in ["query", "key", "value"] {
            qkv_bias.extend(weights.read_shaped(&p(&format!("attention.self.{part}.bias")), &[h])?);
        }
        let qkv_bias = g.floats(&p("attention.self.qkv_bias"), &[3 * h], &qkv_bias)?;
        let mut attention_inputs = vec![&q, &k, &v, &qkv_bias, &key_padding];
        attention_inputs.extend(step_bias.as_ref());
        let attention_inputs: Vec<&str> = attention_inputs.iter().map(|s| s.as_str()).collect();
        let ctx = g.contrib_op(
            "MultiHeadAttention",
            &attention_inputs,
            &[("num_heads", Attr::Int(heads as i64))],
        );
        let out = project(&mut g, &ctx, "attention.output.dense", h, h)?;
        let attended = skip_layer_norm(
            &mut g,
            weights,
            [&out, &x],
            &p("attention.output.dense.bias"),
            &p("attention.output.LayerNorm"),
            h,
            eps,
        )?;
        let inter = config.intermediate_size;
        let up = project(&mut g, &attended, "intermediate.dense", h, inter)?;
        let up_bias = g.weight(weights, &p("intermediate.dense.bias"), &[inter])?;
        // exact (erf) GELU, as BERT's "gelu"
        let gelu = g.contrib_op("BiasGelu", &[&up, &up_bias], &[]);
        let down = project(&mut g, &gelu, "output.dense", inter, h)?;
        x = skip_layer_norm(
            &mut g,
            weights,
            [&down, &attended],
            &p("output.dense.bias"),
            &p("output.LayerNorm"),
            h,
            eps,
        )?;
    }
    g.op_named("Identity", &[&x], &[], LAST_HIDDEN_STATE);
    let mut inputs = vec![INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS];
    inputs.extend(step_causal.then_some(STEP_INDEX));
    g.finish(
        &dir.join(file_name),
        &inputs,
        LAST_HIDDEN_STATE,
        h,
        &format!(
            "actprm: BERT encoder ({} layers, hidden {h}), {precision:?} dense weights{}",
            config.num_hidden_layers,
            if step_causal {
                ", step-causal attention"
            } else {
                ""
            }
        ),
    )
}

/// The additive attention bias `[batch, 1, seq, seq]` of step-causal attention: 0 where the
/// key's step is at most the query's, -10000 elsewhere (MultiHeadAttention's own mask value).
fn step_causal_bias(g: &mut Graph) -> Result<String, ImportError> {
    let query_axis = g.ints("c_axis_2", &[1], &[2]);
    let key_axis = g.ints("c_axis_1", &[1], &[1]);
    let query_steps = g.op("Unsqueeze", &[STEP_INDEX, &query_axis], &[]);
    let key_steps = g.op("Unsqueeze", &[STEP_INDEX, &key_axis], &[]);
    let allowed = g.op("LessOrEqual", &[&key_steps, &query_steps], &[]);
    let open = g.floats("c_attend", &[], &[0.0])?;
    let closed = g.floats("c_masked", &[], &[-10000.0])?;
    let bias = g.op("Where", &[&allowed, &open, &closed], &[]);
    Ok(g.op("Unsqueeze", &[&bias, &key_axis], &[]))
}

fn layer_norm(
    g: &mut Graph,
    weights: &Checkpoint,
    x: &str,
    name: &str,
    h: usize,
    eps: f32,
) -> Result<String, ImportError> {
    let w = g.weight(weights, &format!("{name}.weight"), &[h])?;
    let b = g.weight(weights, &format!("{name}.bias"), &[h])?;
    Ok(g.op(
        "LayerNormalization",
        &[x, &w, &b],
        &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
    ))
}

/// `input + skip + bias`, then LayerNorm `{norm}.weight/.bias` (one fused kernel).
fn skip_layer_norm(
    g: &mut Graph,
    weights: &Checkpoint,
    [input, skip]: [&str; 2],
    bias_name: &str,
    norm: &str,
    h: usize,
    eps: f32,
) -> Result<String, ImportError> {
    let gamma = g.weight(weights, &format!("{norm}.weight"), &[h])?;
    let beta = g.weight(weights, &format!("{norm}.bias"), &[h])?;
    let b = g.weight(weights, bias_name, &[h])?;
    Ok(g.contrib_op(
        "SkipLayerNormalization",
        &[input, skip, &gamma, &beta, &b],
        &[("epsilon", Attr::Float(eps))],
    ))
}

/// Builds a backbone (one file, the embedded default's) from the fp32 weights in `weights_dir`
/// into `target`, written under a temporary name and renamed, so concurrent first uses are safe.
pub fn build_backbone(
    weights_dir: &Path,
    target: &Path,
    precision: Precision,
    step_causal: bool,
) -> Result<(), ImportError> {
    let config = read_config(weights_dir)?;
    let weights = Checkpoint::open(weights_dir)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let tag = crate::sink::atomic::process_tag();
    let temp_name = format!(
        ".{}.{tag}.tmp",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    write_encoder(
        &config,
        &weights,
        precision,
        step_causal,
        dir,
        &temp_name,
        false,
    )?;
    let temp = dir.join(&temp_name);
    crate::sink::atomic::commit(&temp, target).map_err(|e| ImportError::File {
        path: target.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads `config.json` of a BERT checkpoint folder, every value checked.
pub fn read_config(dir: &Path) -> Result<BertConfig, ImportError> {
    use super::config::{invalid, read_typed, Kind};
    const KEYS: &[(&str, Kind, bool)] = &[
        ("hidden_size", Kind::Count, false),
        ("intermediate_size", Kind::Count, false),
        ("num_hidden_layers", Kind::Count, false),
        ("num_attention_heads", Kind::Count, false),
        ("max_position_embeddings", Kind::Count, false),
        ("type_vocab_size", Kind::Count, false),
        ("vocab_size", Kind::Count, false),
        ("layer_norm_eps", Kind::Number, false),
        ("hidden_act", Kind::Text, false),
        ("hidden_dropout_prob", Kind::Number, false),
        ("attention_probs_dropout_prob", Kind::Number, false),
    ];
    let config: BertConfig = read_typed(dir, KEYS, &[])?;
    config.check().map_err(invalid(&dir.join("config.json")))?;
    Ok(config)
}

impl BertConfig {
    /// The first value an encoder cannot be built from, as a message naming its key.
    fn check(&self) -> Result<(), String> {
        use super::config::*;
        sizes_within(
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.vocab_size,
        )?;
        within("type_vocab_size", self.type_vocab_size, 1, MAX_VOCAB)?;
        within(
            "max_position_embeddings",
            self.max_position_embeddings,
            1,
            MAX_POSITIONS,
        )?;
        let (h, heads) = (self.hidden_size, self.num_attention_heads);
        if !h.is_multiple_of(heads) {
            return Err(format!(
                "hidden_size {h} does not split over num_attention_heads {heads}"
            ));
        }
        positive("layer_norm_eps", self.layer_norm_eps)?;
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{key} is {p}; it must be in [0, 1)"));
            }
        }
        Ok(())
    }
}
