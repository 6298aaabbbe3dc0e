//! ActPRM's loss: masked BCE-with-logits over every (head, trajectory, labelled step), plus
//! `lambda * mean((phi - phi_anchor)^2)` over all head parameters. Empty selections are safe: the
//! BCE denominator never drops below one, so the loss is then the anchor term alone, never NaN.

use tch::{Kind, Reduction, Tensor};

use super::heads::TchHeads;

pub struct LossParts {
    pub total: Tensor,
    pub bce: f64,
    pub anchor: f64,
}

/// `x [N, D]`, `targets`/`mask [N]`, `use_pair [N, E]` (bagging, already expanded to steps).
pub fn ensemble_loss(
    heads: &TchHeads,
    x: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    use_pair: &Tensor,
    lambda: f64,
    wrong_weight: f64,
) -> LossParts {
    let logits = heads.forward(x);
    let e = heads.heads as i64;
    let expanded = targets.unsqueeze(1).expand([-1, e], false);
    let bce =
        logits.binary_cross_entropy_with_logits::<Tensor>(&expanded, None, None, Reduction::None);
    let class_weight = (expanded.ones_like() - &expanded) * (wrong_weight - 1.0) + 1.0;
    let weight = mask.unsqueeze(1) * use_pair * class_weight;
    let bce = (bce * &weight).sum(Kind::Float) / weight.sum(Kind::Float).clamp_min(1.0);
    let count: i64 = heads.params.iter().map(|p| p.numel() as i64).sum();
    let anchor = heads
        .params
        .iter()
        .zip(&heads.anchors)
        .map(|(p, a)| (p - a).square().sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, heads.device)), |acc, t| {
            acc + t
        })
        / count as f64;
    let bce_value = bce.double_value(&[]);
    let anchor_value = anchor.double_value(&[]);
    LossParts {
        total: bce + anchor * lambda,
        bce: bce_value,
        anchor: anchor_value,
    }
}
