//! The decoder backbone of Qwen2 / Llama / Mistral checkpoints as an ONNX graph (opset 17 plus
//! ONNX Runtime's fused `MultiHeadAttention`, which its CPU and CUDA providers both run):
//! embeddings, per layer RMSNorm -> grouped-query attention with RoPE -> RMSNorm -> SwiGLU MLP, a
//! final RMSNorm, and optionally the first layer of the family's head. Output:
//! `last_hidden_state` `[batch, seq, width]`, the backbone contract of `model/backbone.rs`.
//! Positions (`position_ids`) and the attention mask (`attention_bias`, additive) are inputs, so
//! the same graph runs a padded batch and a packed token tree whose shared prefixes are computed
//! once.

use std::path::Path;

use super::checkpoint::Checkpoint;
use super::config::HfConfig;
use super::dense::{product, product_weights_8bit, transpose, Precision};
use super::ImportError;
use crate::model::backbone::{
    ATTENTION_BIAS, ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, POSITION_IDS,
};
use crate::model::onnx::{Attr, Graph};

/// A `ReLU(W x + b)` layer applied to the final hidden state inside the graph (Qwen2.5-Math-PRM's
/// `score.0`): the features the heads read are then this layer's output.
pub struct FeatureLayer {
    /// `[out, in]` as stored (nn.Linear).
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out: usize,
}

/// Writes `backbone.onnx` (+ `backbone.onnx.data`) into `dir`; returns the feature width.
pub fn write_backbone(
    config: &HfConfig,
    weights: &Checkpoint,
    prefix: &str,
    feature_layer: Option<FeatureLayer>,
    precision: Precision,
    dir: &Path,
) -> Result<usize, ImportError> {
    let h = config.hidden_size;
    let (nh, nkv, hd) = (
        config.num_attention_heads,
        config.kv_heads(),
        config.head_dim(),
    );
    // HfConfig::read checked these; a config built otherwise is refused here, never divided by 0
    if nkv == 0
        || !nh.is_multiple_of(nkv)
        || !hd.is_multiple_of(2)
        || hd > super::config::MAX_HEAD_DIM
    {
        return Err(ImportError::Unsupported(format!(
            "config.json: {nh} attention heads of width {hd} over {nkv} key-value heads cannot \
             be built"
        )));
    }
    let group = nh / nkv;
    // f16: dense layers in f16; the residual stream, norms and attention in f32 (Qwen2.5's
    // residual stream is known to overflow f16, and so can the attention scores)
    let half = precision == Precision::F16;
    let inter = config.intermediate_size;
    let mut g = Graph::new(Some(&dir.join("backbone.onnx.data")))?;
    // shape plumbing
    let axis1 = g.ints("c_axis1", &[1], &[1]);
    let axis2 = g.ints("c_axis2", &[1], &[2]);
    let axis3 = g.ints("c_axis3", &[1], &[3]);
    // positions come with the tokens: a packed token tree gives each token its depth, the
    // position it has in its own sequence (issue 32); a plain batch gives 0, 1, 2, ...
    let positions = g.op("Cast", &[POSITION_IDS], &[("to", Attr::Int(1))]);
    let positions = g.op("Unsqueeze", &[&positions, &axis2], &[]);
    // RoPE tables [batch, seq, 1, head_dim], for q and k as [batch, seq, heads, head_dim]
    let inv_freq = config.inv_freq();
    let inv_freq = g.floats("rope_inv_freq", &[1, hd / 2], &inv_freq)?;
    let freqs = g.op("MatMul", &[&positions, &inv_freq], &[]);
    let emb = g.op("Concat", &[&freqs, &freqs], &[("axis", Attr::Int(-1))]);
    let emb = g.op("Unsqueeze", &[&emb, &axis2], &[]);
    let cos = g.op("Cos", &[&emb], &[]);
    let sin = g.op("Sin", &[&emb], &[]);
    // rotate_half(x) = x @ R: [-x2, x1]
    let mut rotate = vec![0f32; hd * hd];
    for i in 0..hd / 2 {
        rotate[(i + hd / 2) * hd + i] = -1.0; // out[i] = -x[i + hd/2]
        rotate[i * hd + i + hd / 2] = 1.0; // out[i + hd/2] = x[i]
    }
    let rotate = g.floats("rope_rotate_half", &[hd, hd], &rotate)?;
    // the additive mask [batch, 1, seq, seq] comes with the tokens too: causal and padding for
    // a plain batch, "each token attends to its ancestors" for a packed tree; it is ONNX
    // Runtime's fused MultiHeadAttention's `attention_bias`, so plain batches and trees take the
    // same operator, whose CUDA kernels need not hold the [batch, heads, seq, seq] scores
    let mask = g.op("Unsqueeze", &[ATTENTION_BIAS, &axis1], &[]);
    let eps = g.floats("c_rms_eps", &[], &[config.rms_norm_eps as f32])?;
    let shape_q = g.ints("c_shape_q", &[4], &[0, 0, nh as i64, hd as i64]);
    let shape_kv = g.ints("c_shape_kv", &[4], &[0, 0, nkv as i64, hd as i64]);
    let repeat_kv = g.ints("c_repeat_kv", &[5], &[1, 1, 1, group as i64, 1]);
    let shape_merged = g.ints("c_shape_merged", &[3], &[0, 0, (nh * hd) as i64]);
    let attention = [
        ("num_heads", Attr::Int(nh as i64)),
        ("scale", Attr::Float(1.0 / (hd as f32).sqrt())),
    ];
    // q and k as [batch, seq, heads, head_dim], widened to f32 and rotated
    let rotated = |g: &mut Graph, x: &str| {
        let x = g.widen(x, half);
        rope(g, &x, &cos, &sin, &rotate)
    };
    // keys and values [batch, seq, kv heads, head_dim] -> [batch, seq, heads * head_dim], each
    // key-value head repeated for its `group` query heads
    let repeated = |g: &mut Graph, x: &str| {
        let x = if group == 1 {
            x.to_string()
        } else {
            let x = g.op("Unsqueeze", &[x, &axis3], &[]);
            g.op("Expand", &[&x, &repeat_kv], &[])
        };
        g.op("Reshape", &[&x, &shape_merged], &[])
    };

    let name = |rest: &str| format!("{prefix}{rest}");
    let embed = weights.read_shaped(&name("embed_tokens.weight"), &[config.vocab_size, h])?;
    let embed = g.floats_in(half, "embed_tokens", &[config.vocab_size, h], &embed)?;
    let x = g.op("Gather", &[&embed, INPUT_IDS], &[("axis", Attr::Int(0))]);
    let mut x = g.widen(&x, half);
    let norm = RmsNorm { h, eps: &eps, half };

    for layer in 0..config.num_hidden_layers {
        let p = |rest: &str| name(&format!("layers.{layer}.{rest}"));
        let normed = norm.write(&mut g, weights, &x, &p("input_layernorm.weight"))?;
        let dense = |g: &mut Graph, x: &str, name: &str, shape: [usize; 2]| {
            linear(g, weights, x, &p(name), shape, precision)
        };
        let q = dense(&mut g, &normed, "self_attn.q_proj", [h, nh * hd])?;
        let k = dense(&mut g, &normed, "self_attn.k_proj", [h, nkv * hd])?;
        let v = dense(&mut g, &normed, "self_attn.v_proj", [h, nkv * hd])?;
        let q = g.op("Reshape", &[&q, &shape_q], &[]);
        let q = rotated(&mut g, &q);
        let q = g.op("Reshape", &[&q, &shape_merged], &[]);
        let k = g.op("Reshape", &[&k, &shape_kv], &[]);
        let k = rotated(&mut g, &k);
        let k = repeated(&mut g, &k);
        let v = g.widen(&v, half);
        let v = g.op("Reshape", &[&v, &shape_kv], &[]);
        let v = repeated(&mut g, &v);
        let attended = g.contrib_op(
            "MultiHeadAttention",
            &[&q, &k, &v, "", "", &mask],
            &attention,
        );
        let attended = g.narrow(&attended, half);
        let out = dense(&mut g, &attended, "self_attn.o_proj", [nh * hd, h])?;
        let out = g.widen(&out, half);
        x = g.op("Add", &[&x, &out], &[]);
        let normed = norm.write(&mut g, weights, &x, &p("post_attention_layernorm.weight"))?;
        let gate = dense(&mut g, &normed, "mlp.gate_proj", [h, inter])?;
        let up = dense(&mut g, &normed, "mlp.up_proj", [h, inter])?;
        let sig = g.op("Sigmoid", &[&gate], &[]);
        let act = g.op("Mul", &[&gate, &sig], &[]);
        let act = g.op("Mul", &[&act, &up], &[]);
        let down = dense(&mut g, &act, "mlp.down_proj", [inter, h])?;
        let down = g.widen(&down, half);
        x = g.op("Add", &[&x, &down], &[]);
    }
    let normed = norm.write(&mut g, weights, &x, &name("norm.weight"))?;
    let normed = g.widen(&normed, half);
    let width = match feature_layer {
        None => {
            g.op_named("Identity", &[&normed], &[], LAST_HIDDEN_STATE);
            h
        }
        Some(layer) => {
            let w = g.floats(
                "feature_layer.weight",
                &[h, layer.out],
                &transpose(&layer.weight, layer.out, h),
            )?;
            let b = g.floats("feature_layer.bias", &[layer.out], &layer.bias)?;
            let z = g.op("MatMul", &[&normed, &w], &[]);
            let z = g.op("Add", &[&z, &b], &[]);
            g.op_named("Relu", &[&z], &[], LAST_HIDDEN_STATE);
            layer.out
        }
    };
    g.finish(
        &dir.join("backbone.onnx"),
        &[INPUT_IDS, ATTENTION_MASK, POSITION_IDS, ATTENTION_BIAS],
        LAST_HIDDEN_STATE,
        width,
        &format!(
            "actprm import of a {} decoder ({} layers, hidden {h})",
            config.model_type, config.num_hidden_layers
        ),
    )?;
    Ok(width)
}

/// `x * w / sqrt(mean(x^2) + eps)` over the last axis of width `h`: `x` (the residual stream) is
/// f32, and in f16 the result is narrowed before the weight, as transformers does.
struct RmsNorm<'a> {
    h: usize,
    eps: &'a str,
    half: bool,
}

impl RmsNorm<'_> {
    fn write(
        &self,
        g: &mut Graph,
        weights: &Checkpoint,
        x: &str,
        weight: &str,
    ) -> Result<String, ImportError> {
        let w = g.weight_in(self.half, weights, weight, &[self.h])?;
        let normed = rms(g, x, self.eps);
        let normed = g.narrow(&normed, self.half);
        Ok(g.op("Mul", &[&normed, &w], &[]))
    }
}

/// `x / sqrt(mean(x^2) + eps)` over the last axis.
fn rms(g: &mut Graph, x: &str, eps: &str) -> String {
    let sq = g.op("Mul", &[x, x], &[]);
    let mean = g.op(
        "ReduceMean",
        &[&sq],
        &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
    );
    let var = g.op("Add", &[&mean, eps], &[]);
    let rms = g.op("Sqrt", &[&var], &[]);
    g.op("Div", &[x, &rms], &[])
}

/// `x @ W^T (+ b)` for an nn.Linear stored as `{name}.weight [out, in]` (and `{name}.bias`), in
/// f32, in f16, or with 8-bit weights (`Precision::Int8`; activations stay f32: per-token int8
/// activations moved the reference fixtures' step probabilities by up to 0.5).
fn linear(
    g: &mut Graph,
    weights: &Checkpoint,
    x: &str,
    name: &str,
    [input, output]: [usize; 2],
    precision: Precision,
) -> Result<String, ImportError> {
    let y = match precision {
        Precision::Int8 => product_weights_8bit(g, weights, x, name, input, output)?,
        Precision::F16 => product(g, weights, x, name, input, output, Precision::F16)?,
        _ => product(g, weights, x, name, input, output, Precision::F32)?,
    };
    let bias = format!("{name}.bias");
    if !weights.contains(&bias) {
        return Ok(y);
    }
    let b = g.weight_in(precision == Precision::F16, weights, &bias, &[output])?;
    Ok(g.op("Add", &[&y, &b], &[]))
}

fn rope(g: &mut Graph, x: &str, cos: &str, sin: &str, rotate: &str) -> String {
    let a = g.op("Mul", &[x, cos], &[]);
    let rotated = g.op("MatMul", &[x, rotate], &[]);
    let b = g.op("Mul", &[&rotated, sin], &[]);
    g.op("Add", &[&a, &b], &[])
}
