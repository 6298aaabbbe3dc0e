//! Family heads as actprm heads (`D -> 128 -> ReLU -> 128 -> ReLU -> 1`, sigmoid, mean over
//! E). ActPRM's heads are exactly this shape. A single linear logit `z = u.x + c` (Skywork's value
//! head; Qwen's two-class head after its first layer, which goes into the backbone graph, as
//! `softmax(l)[1] = sigmoid(l1 - l0)`) is carried exactly through the ReLUs as
//! `relu(z) - relu(-z)`; so is a token head (Math-Shepherd, RLHFlow), whose softmax over the
//! logits of two candidate tokens is `sigmoid((W[good] - W[bad]).h)`.

use super::checkpoint::Checkpoint;
use super::ImportError;
use crate::model::heads::{HeadsWeights, HIDDEN};

/// One head computing `sigmoid(u.x + c)` exactly.
pub(super) fn linear_logit(u: &[f32], c: f32) -> HeadsWeights {
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
pub(super) fn ensemble(
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
