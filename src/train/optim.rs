//! AdamW written out on tensors, so its whole state (moments and step) goes into checkpoints and
//! a resumed run continues bit for bit; with the warm-up / linear-decay schedule and global-norm
//! gradient clipping of ACTPRM.md.

use tch::{Kind, Tensor};

use super::config::TrainConfig;

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

pub struct AdamW {
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Optimiser steps taken so far.
    pub step: u64,
}

/// Learning rate at (1-based) step `t`: linear warm-up, then linear decay to 0 at `total_steps`
/// (constant when `total_steps` is 0).
pub fn learning_rate(cfg: &TrainConfig, t: u64) -> f64 {
    if cfg.warmup_steps > 0 && t <= cfg.warmup_steps {
        return cfg.lr * t as f64 / cfg.warmup_steps as f64;
    }
    if cfg.total_steps == 0 || cfg.total_steps <= cfg.warmup_steps {
        return cfg.lr;
    }
    let remaining =
        cfg.total_steps.saturating_sub(t) as f64 / (cfg.total_steps - cfg.warmup_steps) as f64;
    cfg.lr * remaining.max(0.0)
}

impl AdamW {
    pub fn new(params: &[Tensor]) -> Self {
        Self {
            m: params.iter().map(Tensor::zeros_like).collect(),
            v: params.iter().map(Tensor::zeros_like).collect(),
            step: 0,
        }
    }

    /// Clips gradients to `cfg.max_grad_norm`, applies one AdamW update, clears the gradients.
    /// Returns the gradient norm before clipping.
    pub fn step(&mut self, params: &mut [Tensor], cfg: &TrainConfig) -> f64 {
        self.step += 1;
        let lr = learning_rate(cfg, self.step);
        tch::no_grad(|| {
            let grads: Vec<Tensor> = params
                .iter()
                .map(|p| {
                    let g = p.grad();
                    if g.defined() {
                        g
                    } else {
                        p.zeros_like()
                    }
                })
                .collect();
            let norm = grads
                .iter()
                .map(|g| g.square().sum(Kind::Float))
                .fold(
                    Tensor::zeros([], (Kind::Float, params[0].device())),
                    |a, b| a + b,
                )
                .sqrt()
                .double_value(&[]);
            let scale = if cfg.max_grad_norm > 0.0 && norm > cfg.max_grad_norm {
                cfg.max_grad_norm / (norm + 1e-6)
            } else {
                1.0
            };
            let (c1, c2) = (
                1.0 - BETA1.powi(self.step as i32),
                1.0 - BETA2.powi(self.step as i32),
            );
            for (i, p) in params.iter_mut().enumerate() {
                let g = &grads[i] * scale;
                self.m[i] = &self.m[i] * BETA1 + &g * (1.0 - BETA1);
                self.v[i] = &self.v[i] * BETA2 + g.square() * (1.0 - BETA2);
                let update = (&self.m[i] / c1) / ((&self.v[i] / c2).sqrt() + EPS);
                let decayed = &*p * (1.0 - lr * cfg.weight_decay) - update * lr;
                p.copy_(&decayed);
                p.zero_grad();
            }
            norm
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let cfg = TrainConfig {
            lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            ..TrainConfig::default()
        };
        assert!((learning_rate(&cfg, 5) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&cfg, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&cfg, 60) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(&cfg, 110), 0.0);
        let constant = TrainConfig {
            lr: 2.0,
            warmup_steps: 0,
            total_steps: 0,
            ..TrainConfig::default()
        };
        assert_eq!(learning_rate(&constant, 1000), 2.0);
    }
}
