//! A tiny backbone with the real I/O contract, for scale, memory and crash tests where MiniLM
//! (10-20 trajectories/s here) would take a day: an embedding lookup followed by a running mean
//! over the sequence and tanh, so each separator's feature depends on the text before it.

use prost::Message;

use super::onnx::proto::*;
use super::onnx::{Attr, Graph};

/// The ONNX bytes of a tiny backbone: `input_ids, attention_mask -> last_hidden_state [B, S, dim]`.
pub fn tiny_backbone(vocab: usize, dim: usize, seed: u64) -> Vec<u8> {
    // built in memory (no external data file), so no step can fail
    const IN_MEMORY: &str = "a graph built in memory writes no file";
    let mut rng = crate::rng::NormalRng::new(seed);
    let embedding: Vec<f32> = (0..vocab * dim).map(|_| rng.next_normal() as f32).collect();
    let mut g = Graph::new(None).expect(IN_MEMORY);
    g.floats("embedding", &[vocab, dim], &embedding)
        .expect(IN_MEMORY);
    g.ints("axis_last", &[1], &[-1]);
    g.ints("axis_seq", &[], &[1]);
    g.floats("eps", &[], &[1e-6]).expect(IN_MEMORY);
    let to_float = [("to", Attr::Int(DTYPE_FLOAT as i64))];
    for (op, inputs, output, attrs) in [
        (
            "Gather",
            ["embedding", "input_ids"].as_slice(),
            "tokens",
            [].as_slice(),
        ),
        ("Cast", &["attention_mask"], "mask_f", &to_float),
        ("Unsqueeze", &["mask_f", "axis_last"], "mask3", &[]),
        ("Mul", &["tokens", "mask3"], "masked", &[]),
        ("CumSum", &["masked", "axis_seq"], "running_sum", &[]),
        ("CumSum", &["mask3", "axis_seq"], "running_count", &[]),
        ("Add", &["running_count", "eps"], "count", &[]),
        ("Div", &["running_sum", "count"], "running_mean", &[]),
        ("Tanh", &["running_mean"], "last_hidden_state", &[]),
    ] {
        g.op_named(op, inputs, attrs, output);
    }
    let (sym, fixed, value) = (Dimension::named, Dimension::fixed, ValueInfoProto::tensor);
    g.into_model(
        "tiny_backbone",
        vec![
            value("input_ids", DTYPE_INT64, vec![sym("batch"), sym("seq")]),
            value(
                "attention_mask",
                DTYPE_INT64,
                vec![sym("batch"), sym("seq")],
            ),
        ],
        vec![value(
            "last_hidden_state",
            DTYPE_FLOAT,
            vec![sym("batch"), sym("seq"), fixed(dim)],
        )],
        "tiny test backbone: embedding + running mean + tanh",
        &[],
    )
    .expect(IN_MEMORY)
    .encode_to_vec()
}
