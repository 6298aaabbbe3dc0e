//! A tiny backbone with the real I/O contract, for scale, memory and crash tests where MiniLM
//! (10-20 trajectories/s here) would take a day: an embedding lookup followed by a running mean
//! over the sequence and tanh, so each separator's feature depends on the text before it.

use prost::Message;

use super::onnx_proto::*;

/// The ONNX bytes of a tiny backbone: `input_ids, attention_mask -> last_hidden_state [B, S, dim]`.
pub fn tiny_backbone(vocab: usize, dim: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::rng::NormalRng::new(seed);
    let emb: Vec<u8> = (0..vocab * dim)
        .flat_map(|_| (rng.next_normal() as f32).to_le_bytes())
        .collect();
    let tensor =
        |name: &str, dims: Vec<i64>, data_type: i32, raw: Vec<u8>, ints: Vec<i64>| TensorProto {
            dims,
            data_type,
            name: name.into(),
            raw_data: raw,
            int64_data: ints,
            ..Default::default()
        };
    let initializer = vec![
        tensor(
            "embedding",
            vec![vocab as i64, dim as i64],
            DTYPE_FLOAT,
            emb,
            vec![],
        ),
        tensor("axis_last", vec![1], DTYPE_INT64, vec![], vec![-1]),
        tensor("axis_seq", vec![], DTYPE_INT64, vec![], vec![1]),
        tensor(
            "eps",
            vec![],
            DTYPE_FLOAT,
            1e-6f32.to_le_bytes().to_vec(),
            vec![],
        ),
    ];
    let node =
        |op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>| NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: output.into(),
            op_type: op.into(),
            attribute,
            domain: String::new(),
        };
    let to_float = AttributeProto {
        name: "to".into(),
        i: DTYPE_FLOAT as i64,
        r#type: 2,
        ..Default::default()
    };
    let nodes = vec![
        node("Gather", &["embedding", "input_ids"], "tokens", vec![]),
        node("Cast", &["attention_mask"], "mask_f", vec![to_float]),
        node("Unsqueeze", &["mask_f", "axis_last"], "mask3", vec![]),
        node("Mul", &["tokens", "mask3"], "masked", vec![]),
        node("CumSum", &["masked", "axis_seq"], "running_sum", vec![]),
        node("CumSum", &["mask3", "axis_seq"], "running_count", vec![]),
        node("Add", &["running_count", "eps"], "count", vec![]),
        node("Div", &["running_sum", "count"], "running_mean", vec![]),
        node("Tanh", &["running_mean"], "last_hidden_state", vec![]),
    ];
    let (sym, fixed, value) = (Dimension::named, Dimension::fixed, ValueInfoProto::tensor);
    ModelProto {
        ir_version: 8,
        producer_name: "actprm".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "tiny test backbone: embedding + running mean + tanh".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "tiny_backbone".into(),
            initializer,
            input: vec![
                value("input_ids", DTYPE_INT64, vec![sym("batch"), sym("seq")]),
                value(
                    "attention_mask",
                    DTYPE_INT64,
                    vec![sym("batch"), sym("seq")],
                ),
            ],
            output: vec![value(
                "last_hidden_state",
                DTYPE_FLOAT,
                vec![sym("batch"), sym("seq"), fixed(dim)],
            )],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        metadata_props: vec![],
    }
    .encode_to_vec()
}
