//! The dense layers of every backbone actprm writes (BERT encoders and Llama-family decoders):
//! `x @ W^T` in f32; in int8 with s8 weights per output channel and u8 activations (encoders); or
//! with 8-bit weights and f32 activations (decoders, whose activations int8 cannot carry).

use super::checkpoint::Checkpoint;
use super::ImportError;
use crate::model::onnx::proto::{DTYPE_INT8, DTYPE_UINT8};
use crate::model::onnx::{Attr, Graph};

/// How the dense layers' weights are stored and multiplied (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    #[default]
    F32,
    /// Encoders: s8 weights per output channel, u8 activations quantised with one scale per call
    /// (so a row's features depend on its batch). Decoders: 8-bit weights in blocks of 32 with
    /// f32 activations (`product_weights_8bit`).
    Int8,
    /// s8 weights per output channel, u8 activations quantised per token (its own scale), so a
    /// row's features do not depend on the rest of its batch.
    Int8Rows,
    /// Decoders: f16 weights and activations (norms, softmax and the output in f32), as
    /// transformers runs a half-precision model: half of f32's memory, and tensor cores on CUDA
    /// (on CPU, ONNX Runtime widens what it has no f16 kernel for).
    F16,
}

/// Weights per scale in the 8-bit weight-only layers (MatMulNBits' `block_size`).
const WEIGHT_BLOCK: usize = 32;

impl Precision {
    /// The name in `--dtype`, in manifests and in built file names.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
            Self::Int8Rows => "int8-rows",
            Self::F16 => "f16",
        }
    }
}

/// `x @ W^T` (no bias: the caller adds it, often inside a fused kernel) for an nn.Linear
/// `{name}.weight [out, in]`, in f32, f16 or int8.
pub fn product(
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
    if matches!(precision, Precision::F32 | Precision::F16) {
        let half = precision == Precision::F16;
        let w = g.floats_in(half, &format!("{name}.weight"), &[input, output], &w)?;
        return Ok(g.op("MatMul", &[x, &w], &[]));
    }
    let (q, scales) = quantise_per_column(&w, input, output);
    let wq = g.raw(
        &format!("{name}.weight_s8"),
        &[input, output],
        DTYPE_INT8,
        q.iter().map(|&v| v as u8).collect(),
    )?;
    let w_scale = g.floats(&format!("{name}.weight_scale"), &[output], &scales)?;
    if precision == Precision::Int8Rows {
        return int8_rows(g, x, &wq, &w_scale, input, output);
    }
    let quantised = g.op("DynamicQuantizeLinear", &[x], &[]);
    // DynamicQuantizeLinear has three outputs: name them after the first
    let (xq, xs, xz) = (
        quantised.clone(),
        format!("{quantised}_scale"),
        format!("{quantised}_zero"),
    );
    g.outputs_of_last(&[&xq, &xs, &xz]);
    Ok(g.contrib_op("MatMulIntegerToFloat", &[&xq, &wq, &xs, &w_scale, &xz], &[]))
}

/// `x @ W^T` for an nn.Linear `{name}.weight [out, in]` with 8-bit weights and f32 activations
/// (ONNX Runtime's `MatMulNBits`, on CPU and CUDA): symmetric around 128 with one f32 scale per
/// block of 32 inputs of each output, so the weights take a quarter of f32's memory while the
/// activations, whose outlier channels one int8 scale cannot carry, stay exact.
pub fn product_weights_8bit(
    g: &mut Graph,
    weights: &Checkpoint,
    x: &str,
    name: &str,
    input: usize,
    output: usize,
) -> Result<String, ImportError> {
    let w = weights.read_shaped(&format!("{name}.weight"), &[output, input])?;
    let (q, scales, blocks) = quantise_blocks(&w, output, input);
    let wq = g.raw(
        &format!("{name}.weight_q8"),
        &[output, blocks, WEIGHT_BLOCK],
        DTYPE_UINT8,
        q,
    )?;
    let scales = g.floats(
        &format!("{name}.weight_scales"),
        &[output * blocks],
        &scales,
    )?;
    Ok(g.contrib_op(
        "MatMulNBits",
        &[x, &wq, &scales],
        &[
            ("K", Attr::Int(input as i64)),
            ("N", Attr::Int(output as i64)),
            ("bits", Attr::Int(8)),
            ("block_size", Attr::Int(WEIGHT_BLOCK as i64)),
        ],
    ))
}

/// `w [rows, cols]` row by row in blocks of [`WEIGHT_BLOCK`] columns (the last zero-padded):
/// `w ~ (q - 128) * scale` with `scale = max |w| / 127` per block. Returns `q` as
/// `[rows, blocks, WEIGHT_BLOCK]`, the scales as `[rows, blocks]` and the block count.
fn quantise_blocks(w: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>, usize) {
    let blocks = cols.div_ceil(WEIGHT_BLOCK);
    let mut q = vec![128u8; rows * blocks * WEIGHT_BLOCK];
    let mut scales = vec![1f32; rows * blocks];
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        for (b, chunk) in row.chunks(WEIGHT_BLOCK).enumerate() {
            let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales[r * blocks + b] = scale;
            let out = &mut q[(r * blocks + b) * WEIGHT_BLOCK..];
            for (o, v) in out.iter_mut().zip(chunk) {
                *o = ((v / scale).round().clamp(-127.0, 127.0) + 128.0) as u8;
            }
        }
    }
    (q, scales, blocks)
}

/// `x @ W` with `x` quantised row by row: symmetric u8 around 128 with each token's own scale
/// (`max |x| / 127`), exact integer products scaled per weight column in one kernel, then by
/// each row's scale.
fn int8_rows(
    g: &mut Graph,
    x: &str,
    wq: &str,
    w_scale: &str,
    input: usize,
    output: usize,
) -> Result<String, ImportError> {
    let rows_shape = g.ints(&format!("c_rows_{input}"), &[2], &[-1, input as i64]);
    let x2 = g.op("Reshape", &[x, &rows_shape], &[]);
    // max |x| per row as max(max x, -min x): two read-only reductions, no |x| copy (6 % faster)
    let per_row = [("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))];
    let high = g.op("ReduceMax", &[&x2], &per_row);
    let low = g.op("ReduceMin", &[&x2], &per_row);
    let low = g.op("Neg", &[&low], &[]);
    let tiny = g.floats("c_rows_tiny", &[], &[1e-12])?;
    let levels = g.floats("c_rows_levels", &[], &[127.0])?;
    let max = g.op("Max", &[&high, &low, &tiny], &[]);
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
    let unit = g.floats("c_rows_unit", &[], &[1.0])?;
    let y = g.contrib_op(
        "MatMulIntegerToFloat",
        &[&xq, wq, &unit, w_scale, &a_zero],
        &[],
    );
    let axis1 = g.ints("c_rows_axis1", &[1], &[1]);
    let row_scale = g.op("Unsqueeze", &[&scale, &axis1], &[]);
    let y = g.op("Mul", &[&y, &row_scale], &[]);
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

/// `[rows, cols]` -> `[cols, rows]`.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_blocks_round_within_half_a_step_and_pad_with_zeros() {
        // 2 rows of 40 columns: one full block of 32 and one of 8 padded to 32
        let w: Vec<f32> = (0..80)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let (q, scales, blocks) = quantise_blocks(&w, 2, 40);
        assert_eq!(blocks, 2);
        assert_eq!(q.len(), 2 * 2 * WEIGHT_BLOCK);
        for r in 0..2 {
            for c in 0..40 {
                let (b, j) = (c / WEIGHT_BLOCK, c % WEIGHT_BLOCK);
                let scale = scales[r * blocks + b];
                let back = (q[(r * blocks + b) * WEIGHT_BLOCK + j] as f32 - 128.0) * scale;
                assert!((back - w[r * 40 + c]).abs() <= scale / 2.0 + 1e-6);
            }
            // the padding dequantises to 0
            let pad = &q[(r * blocks + 1) * WEIGHT_BLOCK + 8..(r * blocks + 2) * WEIGHT_BLOCK];
            assert!(pad.iter().all(|&v| v == 128));
        }
        // each block's largest weight takes the full range
        assert!(q.contains(&1) || q.contains(&255));
    }
}
