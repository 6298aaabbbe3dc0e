//! The ensemble of E MLP heads (`D -> 128 -> ReLU -> 128 -> ReLU -> 1`) as plain weights, and their
//! ONNX graph. The scorer loads this graph with ONNX Runtime; the trainer writes trained weights into
//! exactly the same graph, so scorer and trainer can never disagree on the architecture.

use prost::Message;

use super::onnx::proto::*;
use super::onnx::{Attr, Graph};
use super::ModelError;

/// Width of both hidden layers, fixed by ActPRM.
pub const HIDDEN: usize = 128;
/// Graph input: step features `[N, D]`.
pub const INPUT_FEATURES: &str = "features";
/// Graph outputs: per-head logits and probabilities, both `[N, E]`.
pub const OUTPUT_LOGITS: &str = "logits";
pub const OUTPUT_PROBS: &str = "probs";

/// Weights of all E heads, stacked head-major so each tensor is one batched matmul.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadsWeights {
    pub heads: usize,
    pub dim: usize,
    /// `[E, D, H]`
    pub w1: Vec<f32>,
    /// `[E, H]`
    pub b1: Vec<f32>,
    /// `[E, H, H]`
    pub w2: Vec<f32>,
    /// `[E, H]`
    pub b2: Vec<f32>,
    /// `[E, H]` (the `H -> 1` layer)
    pub w3: Vec<f32>,
    /// `[E]`
    pub b3: Vec<f32>,
}

/// Names and shapes of the six parameter tensors, in a fixed order shared with the trainer.
pub fn parameter_shapes(heads: usize, dim: usize) -> [(&'static str, Vec<i64>); 6] {
    let (e, d, h) = (heads as i64, dim as i64, HIDDEN as i64);
    [
        ("w1", vec![e, d, h]),
        ("b1", vec![e, 1, h]),
        ("w2", vec![e, h, h]),
        ("b2", vec![e, 1, h]),
        ("w3", vec![e, h, 1]),
        ("b3", vec![e, 1, 1]),
    ]
}

impl HeadsWeights {
    /// ActPRM's init: every weight of every head an independent draw from
    /// `N(0, (1 / (2 sqrt(fan_in)))^2)`, biases zero. Deterministic for a seed on every platform.
    pub fn init(heads: usize, dim: usize, seed: u64) -> Self {
        let mut rng = crate::rng::NormalRng::new(seed);
        let mut draw = |count: usize, fan_in: usize| {
            let std = 1.0 / (2.0 * (fan_in as f64).sqrt());
            (0..count)
                .map(|_| (rng.next_normal() * std) as f32)
                .collect::<Vec<f32>>()
        };
        let w1 = draw(heads * dim * HIDDEN, dim);
        let w2 = draw(heads * HIDDEN * HIDDEN, HIDDEN);
        let w3 = draw(heads * HIDDEN, HIDDEN);
        Self {
            heads,
            dim,
            w1,
            b1: vec![0.0; heads * HIDDEN],
            w2,
            b2: vec![0.0; heads * HIDDEN],
            w3,
            b3: vec![0.0; heads],
        }
    }

    /// The six tensors in [`parameter_shapes`] order.
    pub fn tensors(&self) -> [&[f32]; 6] {
        [&self.w1, &self.b1, &self.w2, &self.b2, &self.w3, &self.b3]
    }

    /// Builds from the six tensors in [`parameter_shapes`] order, checking every length.
    pub fn from_tensors(
        heads: usize,
        dim: usize,
        tensors: [Vec<f32>; 6],
    ) -> Result<Self, ModelError> {
        let shapes = parameter_shapes(heads, dim);
        for ((name, shape), t) in shapes.iter().zip(tensors.iter()) {
            let want: i64 = shape.iter().product();
            if t.len() as i64 != want {
                return Err(ModelError::Heads(format!(
                    "tensor {name} has {} values, expected {want} for E={heads}, D={dim}",
                    t.len()
                )));
            }
        }
        let [w1, b1, w2, b2, w3, b3] = tensors;
        Ok(Self {
            heads,
            dim,
            w1,
            b1,
            w2,
            b2,
            w3,
            b3,
        })
    }

    /// Per-head probabilities for one feature vector, in plain Rust: the reference the ONNX graph is
    /// tested against.
    pub fn forward_one(&self, x: &[f32]) -> Vec<f32> {
        let (d, h) = (self.dim, HIDDEN);
        (0..self.heads)
            .map(|e| {
                let mut h1 = self.b1[e * h..(e + 1) * h].to_vec();
                for (i, xi) in x.iter().enumerate() {
                    let row = &self.w1[(e * d + i) * h..(e * d + i + 1) * h];
                    h1.iter_mut().zip(row).for_each(|(a, w)| *a += xi * w);
                }
                h1.iter_mut().for_each(|a| *a = a.max(0.0));
                let mut h2 = self.b2[e * h..(e + 1) * h].to_vec();
                for (i, hi) in h1.iter().enumerate() {
                    let row = &self.w2[(e * h + i) * h..(e * h + i + 1) * h];
                    h2.iter_mut().zip(row).for_each(|(a, w)| *a += hi * w);
                }
                let z: f32 = h2
                    .iter()
                    .zip(&self.w3[e * h..(e + 1) * h])
                    .map(|(a, w)| a.max(0.0) * w)
                    .sum::<f32>()
                    + self.b3[e];
                1.0 / (1.0 + (-z).exp())
            })
            .collect()
    }

    /// Serialises the ensemble as an ONNX graph: `features [N, D] -> logits, probs [N, E]`.
    pub fn to_onnx(&self, metadata: &[(&str, String)]) -> Vec<u8> {
        // built in memory (no external data file), so no step can fail
        const IN_MEMORY: &str = "a graph built in memory writes no file";
        let mut g = Graph::new(None).expect(IN_MEMORY);
        for ((name, dims), data) in parameter_shapes(self.heads, self.dim)
            .iter()
            .zip(self.tensors())
        {
            let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
            g.floats(name, &dims, data).expect(IN_MEMORY);
        }
        g.ints("squeeze_axes", &[1], &[-1]);
        for (op, inputs, output) in [
            ("MatMul", [INPUT_FEATURES, "w1"].as_slice(), "a1"),
            ("Add", &["a1", "b1"], "z1"),
            ("Relu", &["z1"], "h1"),
            ("MatMul", &["h1", "w2"], "a2"),
            ("Add", &["a2", "b2"], "z2"),
            ("Relu", &["z2"], "h2"),
            ("MatMul", &["h2", "w3"], "a3"),
            ("Add", &["a3", "b3"], "z3"),
            ("Squeeze", &["z3", "squeeze_axes"], "z"),
        ] {
            g.op_named(op, inputs, &[], output);
        }
        g.op_named(
            "Transpose",
            &["z"],
            &[("perm", Attr::Ints(vec![1, 0]))],
            OUTPUT_LOGITS,
        );
        g.op_named("Sigmoid", &[OUTPUT_LOGITS], &[], OUTPUT_PROBS);
        let value = |name: &str, dims| ValueInfoProto::tensor(name, DTYPE_FLOAT, dims);
        let (sym, fixed) = (Dimension::named, Dimension::fixed);
        let mut props = vec![
            ("actprm.heads", self.heads.to_string()),
            ("actprm.dim", self.dim.to_string()),
        ];
        props.extend(metadata.iter().cloned());
        g.into_model(
            "actprm_heads",
            vec![value(INPUT_FEATURES, vec![sym("steps"), fixed(self.dim)])],
            vec![
                value(OUTPUT_LOGITS, vec![sym("steps"), fixed(self.heads)]),
                value(OUTPUT_PROBS, vec![sym("steps"), fixed(self.heads)]),
            ],
            "ActPRM ensemble heads: features [N,D] -> logits, probs [N,E]",
            &props,
        )
        .expect(IN_MEMORY)
        .encode_to_vec()
    }

    /// Reads weights back from a heads graph written by [`Self::to_onnx`].
    pub fn from_onnx(bytes: &[u8]) -> Result<Self, ModelError> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| ModelError::Heads(format!("not an ONNX model: {e}")))?;
        let graph = model
            .graph
            .ok_or_else(|| ModelError::Heads("ONNX model has no graph".into()))?;
        let find = |name: &str| {
            graph
                .initializer
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| ModelError::Heads(format!("heads graph lacks initializer {name}")))
        };
        let w1 = find("w1")?;
        if w1.dims.len() != 3 || w1.dims[2] != HIDDEN as i64 {
            return Err(ModelError::Heads(format!(
                "w1 has shape {:?}, expected [E, D, {HIDDEN}]",
                w1.dims
            )));
        }
        let (heads, dim) = (w1.dims[0] as usize, w1.dims[1] as usize);
        let mut tensors: [Vec<f32>; 6] = Default::default();
        for (slot, (name, _)) in tensors.iter_mut().zip(parameter_shapes(heads, dim).iter()) {
            let t = find(name)?;
            *slot = if !t.raw_data.is_empty() {
                t.raw_data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            } else {
                t.float_data.clone()
            };
        }
        Self::from_tensors(heads, dim, tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_round_trip_keeps_every_weight() {
        let w = HeadsWeights::init(3, 16, 7);
        let back = HeadsWeights::from_onnx(&w.to_onnx(&[])).unwrap();
        assert_eq!(w, back);
    }

    #[test]
    fn init_is_seeded_and_scaled() {
        let a = HeadsWeights::init(8, 384, 1);
        assert_eq!(a, HeadsWeights::init(8, 384, 1));
        assert_ne!(a.w1, HeadsWeights::init(8, 384, 2).w1);
        let var = a.w1.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / a.w1.len() as f64;
        let want = 1.0 / (4.0 * 384.0);
        assert!((var / want - 1.0).abs() < 0.02, "variance {var} vs {want}");
        assert!(a.b1.iter().all(|b| *b == 0.0));
    }
}
