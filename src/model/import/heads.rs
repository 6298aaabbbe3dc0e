//! Each family's head as actprm heads (`D -> 128 -> ReLU -> 128 -> ReLU -> 1`, sigmoid, mean over
//! E). ActPRM's heads are exactly this shape. A single linear logit `z = u.x + c` (Skywork's value
//! head; Qwen's two-class head after its first layer, which goes into the backbone graph, as
//! `softmax(l)[1] = sigmoid(l1 - l0)`) is carried exactly through the ReLUs as
//! `relu(z) - relu(-z)`; so is a token head (Math-Shepherd, RLHFlow), whose softmax over the
//! logits of two candidate tokens is `sigmoid((W[good] - W[bad]).h)`.

use super::checkpoint::Checkpoint;
use super::config::{HfConfig, MAX_ENSEMBLE};
use super::decoder::FeatureLayer;
use super::{Family, ImportError};
use crate::model::heads::{HeadsWeights, HIDDEN};

/// The layer folded into the backbone (if any), the heads, and their anchors.
pub fn build(
    family: Family,
    config: &HfConfig,
    weights: &Checkpoint,
    candidates: Option<(u32, u32)>,
) -> Result<(Option<FeatureLayer>, HeadsWeights, HeadsWeights), ImportError> {
    let h = config.hidden_size;
    match family {
        Family::QwenPrm => {
            let w0 = weights.read_shaped("score.0.weight", &[h, h])?;
            let b0 = weights.read_shaped("score.0.bias", &[h])?;
            let w2 = weights.read_shaped("score.2.weight", &[2, h])?;
            let b2 = weights.read_shaped("score.2.bias", &[2])?;
            let u: Vec<f32> = (0..h).map(|i| w2[h + i] - w2[i]).collect();
            let heads = linear_logit(&u, b2[1] - b2[0]);
            let layer = FeatureLayer {
                weight: w0,
                bias: b0,
                out: h,
            };
            Ok((Some(layer), heads.clone(), heads))
        }
        Family::Skywork => {
            let v = weights.read_shaped("v_head.summary.weight", &[1, h])?;
            let b = weights.read_shaped("v_head.summary.bias", &[1])?;
            let heads = linear_logit(&v, b[0]);
            Ok((None, heads.clone(), heads))
        }
        Family::Actprm => {
            let first = "score.model.nn1.weight";
            let e = match weights.shape(first)? {
                &[e, _, _] if (1..=MAX_ENSEMBLE).contains(&e) => e,
                shape => {
                    return Err(weights.refuse(
                        first,
                        format!(
                            "has shape {shape:?}; ActPRM's first head layer is [E, {h}, \
                             {HIDDEN}] with E from 1 to {MAX_ENSEMBLE}"
                        ),
                    ))
                }
            };
            let heads = ensemble(weights, "score.model", e, h)?;
            // the regularisation anchors become the trainer's, as ActPRM trains them
            let anchors = if weights.contains("score.reg_model.nn1.weight") {
                ensemble(weights, "score.reg_model", e, h)?
            } else {
                heads.clone()
            };
            Ok((None, heads, anchors))
        }
        Family::TokenHead => {
            let (good, bad) = candidates.ok_or_else(|| {
                ImportError::Unsupported("a token-head PRM needs its two candidate tokens".into())
            })?;
            // the LM head's two rows: softmax over (good, bad) is sigmoid of their difference
            let name = if weights.contains("lm_head.weight") {
                "lm_head.weight"
            } else {
                "model.embed_tokens.weight"
            };
            let rows = match weights.shape(name)? {
                &[rows, _] if rows >= 1 => rows,
                shape => {
                    return Err(weights.refuse(
                        name,
                        format!("has shape {shape:?}; a language model head is [vocab, {h}]"),
                    ))
                }
            };
            let lm = weights.read_shaped(name, &[rows, h])?;
            let row = |id: u32| {
                let id = id as usize;
                lm.get(id * h..(id + 1) * h).ok_or_else(|| {
                    weights.refuse(
                        name,
                        format!("has {rows} rows; the candidate token {id} is past them"),
                    )
                })
            };
            let (g, b) = (row(good)?, row(bad)?);
            let u: Vec<f32> = g.iter().zip(b).map(|(x, y)| x - y).collect();
            let c = if weights.contains("lm_head.bias") {
                let bias = weights.read_shaped("lm_head.bias", &[rows])?;
                bias[good as usize] - bias[bad as usize]
            } else {
                0.0
            };
            let heads = linear_logit(&u, c);
            Ok((None, heads.clone(), heads))
        }
        Family::Auto | Family::BertEncoder => Err(ImportError::Unsupported(
            "the family must be known before the heads are built".into(),
        )),
    }
}

/// One head computing `sigmoid(u.x + c)` exactly.
fn linear_logit(u: &[f32], c: f32) -> HeadsWeights {
    let d = u.len();
    let mut w = HeadsWeights::init(1, d, 0);
    w.w1.fill(0.0);
    w.b1.fill(0.0);
    w.w2.fill(0.0);
    w.b2.fill(0.0);
    w.w3.fill(0.0);
    w.b3.fill(0.0);
    for (i, &ui) in u.iter().enumerate() {
        w.w1[i * HIDDEN] = ui; // unit 0: relu(z)
        w.w1[i * HIDDEN + 1] = -ui; // unit 1: relu(-z)
    }
    w.b1[0] = c;
    w.b1[1] = -c;
    w.w2[0] = 1.0; // [0][0]
    w.w2[HIDDEN + 1] = 1.0; // [1][1]
    w.w3[0] = 1.0;
    w.w3[1] = -1.0;
    w
}

/// ActPRM's stored ensemble (`[E, in, out]`, as actprm lays its heads out).
fn ensemble(
    weights: &Checkpoint,
    prefix: &str,
    e: usize,
    h: usize,
) -> Result<HeadsWeights, ImportError> {
    let read =
        |name: &str, shape: &[usize]| weights.read_shaped(&format!("{prefix}.{name}"), shape);
    Ok(HeadsWeights {
        heads: e,
        dim: h,
        w1: read("nn1.weight", &[e, h, HIDDEN])?,
        b1: read("nn1.bias", &[e, HIDDEN])?,
        w2: read("nn2.weight", &[e, HIDDEN, HIDDEN])?,
        b2: read("nn2.bias", &[e, HIDDEN])?,
        w3: read("nn_out.weight", &[e, HIDDEN, 1])?,
        b3: read("nn_out.bias", &[e, 1])?,
    })
}
