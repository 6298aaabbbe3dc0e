//! A BERT encoder (all-MiniLM-L6-v2, the default backbone) as an ONNX graph written from its
//! fp32 weights: embeddings (word + position + token type, LayerNorm), per layer bidirectional
//! self-attention with the padding mask, add & LayerNorm, GELU feed-forward, add & LayerNorm.
//! With `Precision::Int8`, every dense layer's weights are quantised per output channel (s8,
//! symmetric) and its input per call (u8, `DynamicQuantizeLinear`), the form ONNX Runtime runs
//! fastest on VNNI CPUs; attention itself stays f32.

use std::path::Path;

use serde::Deserialize;

use super::checkpoint::Checkpoint;
use super::decoder::transpose;
use super::graph::{Attr, Graph};
use super::ImportError;
use crate::model::backbone::{ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, TOKEN_TYPE_IDS};
use crate::model::onnx_proto::{DTYPE_INT8, DTYPE_UINT8};

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
}

fn default_eps() -> f64 {
    1e-12
}

/// How the dense layers' weights are stored and multiplied (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    /// s8 weights per output channel, u8 activations quantised per call (BERT encoders).
    Int8,
    /// s8 weights per output channel, u8 activations quantised per token (its own scale), so a
    /// row's features do not depend on the rest of its batch (BERT encoders).
    Int8Rows,
}

/// Writes `file_name` in `dir` (its weights in `file_name.data` beside it when `external`):
/// `input_ids, attention_mask, token_type_ids -> last_hidden_state [batch, seq, hidden]`. The
/// bytes depend only on the weights and the precision, so a written graph can be pinned by hash.
pub fn write_encoder(
    config: &BertConfig,
    weights: &Checkpoint,
    precision: Precision,
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
    let hd = h / heads;
    let data = dir.join(format!("{file_name}.data"));
    let mut g = Graph::new(external.then_some(data.as_path()))?;
    let one = g.ints("c_one", &[], &[1]);
    let zero = g.ints("c_zero", &[], &[0]);
    let axes12 = g.ints("c_axes12", &[2], &[1, 2]);
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
    // additive padding mask [batch, 1, 1, seq]
    let f_one = g.floats("c_f_one", &[], &[1.0])?;
    let f_neg = g.floats("c_f_neg", &[], &[-1e9])?;
    let pad = g.op("Cast", &[ATTENTION_MASK], &[("to", Attr::Int(1))]);
    let pad = g.op("Unsqueeze", &[&pad, &axes12], &[]);
    let blocked = g.op("Sub", &[&f_one, &pad], &[]);
    let mask = g.op("Mul", &[&blocked, &f_neg], &[]);
    let scale = g.floats("c_attn_scale", &[], &[1.0 / (hd as f32).sqrt()])?;
    let shape_heads = g.ints("c_shape_heads", &[4], &[0, 0, heads as i64, hd as i64]);
    let shape_merged = g.ints("c_shape_merged", &[3], &[0, 0, h as i64]);
    let sqrt_half = g.floats("c_sqrt_half", &[], &[std::f32::consts::FRAC_1_SQRT_2])?;
    let half = g.floats("c_half", &[], &[0.5])?;
    for layer in 0..config.num_hidden_layers {
        let p = |rest: &str| format!("encoder.layer.{layer}.{rest}");
        let heads_first = [("perm", Attr::Ints(vec![0, 2, 1, 3]))];
        let split = |g: &mut Graph, t: &str| {
            let t = g.op("Reshape", &[t, &shape_heads], &[]);
            g.op("Transpose", &[&t], &heads_first)
        };
        let q = dense(
            &mut g,
            weights,
            &x,
            &p("attention.self.query"),
            h,
            h,
            precision,
        )?;
        let k = dense(
            &mut g,
            weights,
            &x,
            &p("attention.self.key"),
            h,
            h,
            precision,
        )?;
        let v = dense(
            &mut g,
            weights,
            &x,
            &p("attention.self.value"),
            h,
            h,
            precision,
        )?;
        let q = split(&mut g, &q);
        let q = g.op("Mul", &[&q, &scale], &[]);
        let k = g.op("Reshape", &[&k, &shape_heads], &[]);
        let k = g.op(
            "Transpose",
            &[&k],
            &[("perm", Attr::Ints(vec![0, 2, 3, 1]))],
        );
        let v = split(&mut g, &v);
        let ctx = g.attention(&q, &k, &v, &mask);
        let ctx = g.op("Transpose", &[&ctx], &heads_first);
        let ctx = g.op("Reshape", &[&ctx, &shape_merged], &[]);
        let out = dense(
            &mut g,
            weights,
            &ctx,
            &p("attention.output.dense"),
            h,
            h,
            precision,
        )?;
        let res = g.op("Add", &[&out, &x], &[]);
        let attended = layer_norm(
            &mut g,
            weights,
            &res,
            &p("attention.output.LayerNorm"),
            h,
            eps,
        )?;
        let inter = config.intermediate_size;
        let up = dense(
            &mut g,
            weights,
            &attended,
            &p("intermediate.dense"),
            h,
            inter,
            precision,
        )?;
        // exact GELU: x * 0.5 * (1 + erf(x / sqrt 2))
        let scaled = g.op("Mul", &[&up, &sqrt_half], &[]);
        let erf = g.op("Erf", &[&scaled], &[]);
        let erf1 = g.op("Add", &[&erf, &f_one], &[]);
        let gelu = g.op("Mul", &[&up, &erf1], &[]);
        let gelu = g.op("Mul", &[&gelu, &half], &[]);
        let down = dense(
            &mut g,
            weights,
            &gelu,
            &p("output.dense"),
            inter,
            h,
            precision,
        )?;
        let res = g.op("Add", &[&down, &attended], &[]);
        x = layer_norm(&mut g, weights, &res, &p("output.LayerNorm"), h, eps)?;
    }
    g.op_named("Identity", &[&x], &[], LAST_HIDDEN_STATE);
    g.finish(
        &dir.join(file_name),
        &[INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS],
        LAST_HIDDEN_STATE,
        h,
        &format!(
            "actprm: BERT encoder ({} layers, hidden {h}), {precision:?} dense weights",
            config.num_hidden_layers
        ),
    )
}

fn layer_norm(
    g: &mut Graph,
    weights: &Checkpoint,
    x: &str,
    name: &str,
    h: usize,
    eps: f32,
) -> Result<String, ImportError> {
    let w = weights.read_shaped(&format!("{name}.weight"), &[h])?;
    let b = weights.read_shaped(&format!("{name}.bias"), &[h])?;
    let w = g.floats(&format!("{name}.weight"), &[h], &w)?;
    let b = g.floats(&format!("{name}.bias"), &[h], &b)?;
    Ok(g.op(
        "LayerNormalization",
        &[x, &w, &b],
        &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
    ))
}

/// `x @ W^T + b` for an nn.Linear `{name}.weight [out, in]`, in f32 or int8.
fn dense(
    g: &mut Graph,
    weights: &Checkpoint,
    x: &str,
    name: &str,
    input: usize,
    output: usize,
    precision: Precision,
) -> Result<String, ImportError> {
    let w = weights.read_shaped(&format!("{name}.weight"), &[output, input])?;
    let w = transpose(&w, output, input); // [in, out]
    let b = weights.read_shaped(&format!("{name}.bias"), &[output])?;
    let b = g.floats(&format!("{name}.bias"), &[output], &b)?;
    let y = match precision {
        Precision::F32 => {
            let w = g.floats(&format!("{name}.weight"), &[input, output], &w)?;
            g.op("MatMul", &[x, &w], &[])
        }
        Precision::Int8 | Precision::Int8Rows => {
            let (q, scales) = quantise_per_column(&w, input, output);
            let wq = g.raw(
                &format!("{name}.weight_s8"),
                &[input, output],
                DTYPE_INT8,
                q.iter().map(|&v| v as u8).collect(),
            )?;
            let w_zero = g.raw(
                &format!("{name}.weight_zero"),
                &[output],
                DTYPE_INT8,
                vec![0u8; output],
            )?;
            let w_scale = g.floats(&format!("{name}.weight_scale"), &[output], &scales)?;
            if precision == Precision::Int8Rows {
                let y = int8_rows(g, x, &wq, &w_zero, &w_scale, input, output)?;
                return Ok(g.op("Add", &[&y, &b], &[]));
            }
            let quantised = g.op("DynamicQuantizeLinear", &[x], &[]);
            // DynamicQuantizeLinear has three outputs: name them after the first
            let (xq, xs, xz) = (
                quantised.clone(),
                format!("{quantised}_scale"),
                format!("{quantised}_zero"),
            );
            g.outputs_of_last(&[&xq, &xs, &xz]);
            let acc = g.op("MatMulInteger", &[&xq, &wq, &xz, &w_zero], &[]);
            let acc = g.op("Cast", &[&acc], &[("to", Attr::Int(1))]);
            let acc = g.op("Mul", &[&acc, &xs], &[]);
            g.op("Mul", &[&acc, &w_scale], &[])
        }
    };
    Ok(g.op("Add", &[&y, &b], &[]))
}

/// `x @ W` with `x` quantised row by row: symmetric u8 around 128 with each token's own scale
/// (`max |x| / 127`), exact integer products, then both scales applied.
fn int8_rows(
    g: &mut Graph,
    x: &str,
    wq: &str,
    w_zero: &str,
    w_scale: &str,
    input: usize,
    output: usize,
) -> Result<String, ImportError> {
    let rows_shape = g.ints(&format!("c_rows_{input}"), &[2], &[-1, input as i64]);
    let x2 = g.op("Reshape", &[x, &rows_shape], &[]);
    let abs = g.op("Abs", &[&x2], &[]);
    let max = g.op(
        "ReduceMax",
        &[&abs],
        &[("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
    );
    let tiny = g.floats("c_rows_tiny", &[], &[1e-12])?;
    let levels = g.floats("c_rows_levels", &[], &[127.0])?;
    let max = g.op("Max", &[&max, &tiny], &[]);
    let scale = g.op("Div", &[&max, &levels], &[]);
    let zero_f = g.floats("c_rows_zero", &[], &[0.0])?;
    let mid = g.floats("c_rows_mid", &[], &[128.0])?;
    let zp = g.op("Mul", &[&scale, &zero_f], &[]);
    let zp = g.op("Add", &[&zp, &mid], &[]);
    let zp = g.op("Cast", &[&zp], &[("to", Attr::Int(DTYPE_UINT8 as i64))]);
    let xq = g.op(
        "QuantizeLinear",
        &[&x2, &scale, &zp],
        &[("axis", Attr::Int(0))],
    );
    let a_zero = g.raw("c_rows_a_zero", &[], DTYPE_UINT8, vec![128])?;
    let acc = g.op("MatMulInteger", &[&xq, wq, &a_zero, w_zero], &[]);
    let acc = g.op("Cast", &[&acc], &[("to", Attr::Int(1))]);
    let axis1 = g.ints("c_rows_axis1", &[1], &[1]);
    let row_scale = g.op("Unsqueeze", &[&scale, &axis1], &[]);
    let y = g.op("Mul", &[&acc, &row_scale], &[]);
    let y = g.op("Mul", &[&y, w_scale], &[]);
    // back to [batch, seq, out]
    let shape = g.op("Shape", &[x], &[]);
    let start = g.ints("c_rows_start", &[1], &[0]);
    let end = g.ints("c_rows_end", &[1], &[-1]);
    let lead = g.op("Slice", &[&shape, &start, &end], &[]);
    let out = g.ints(&format!("c_rows_out_{output}"), &[1], &[output as i64]);
    let target = g.op("Concat", &[&lead, &out], &[("axis", Attr::Int(0))]);
    Ok(g.op("Reshape", &[&y, &target], &[]))
}

/// Symmetric s8 per output column: `w[i][j] ~ q[i][j] * scale[j]`.
fn quantise_per_column(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; cols];
    for r in 0..rows {
        for c in 0..cols {
            scales[c] = scales[c].max(w[r * cols + c].abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scales[i % cols]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// Builds the embedded default's backbone (one file) from the fp32 weights in `weights_dir` into
/// `target`, written under a temporary name and renamed, so concurrent first uses are safe.
pub fn build_default_backbone(
    weights_dir: &Path,
    target: &Path,
    precision: Precision,
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
    write_encoder(&config, &weights, precision, dir, &temp_name, false)?;
    let temp = dir.join(&temp_name);
    crate::sink::atomic::commit(&temp, target).map_err(|e| ImportError::File {
        path: target.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads `config.json` of a BERT checkpoint folder.
pub fn read_config(dir: &Path) -> Result<BertConfig, ImportError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(ImportError::io(&path))?;
    serde_json::from_str(&text).map_err(|e| ImportError::File {
        path,
        message: e.to_string(),
    })
}
