//! The trainer: owns the heads and optimiser, takes steps on labelled batches (the active loop's
//! unit of work) or fits a whole feature store for some epochs, and exports model directories.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::batch::LabelledBatch;
use super::checkpoint::{self, CheckpointMeta, CHECKPOINT_META, CHECKPOINT_TENSORS};
use super::config::{StepReport, TrainConfig};
use super::heads::TchHeads;
use super::loss::ensemble_loss;
use super::optim::AdamW;
use super::TrainError;
use crate::formats::features::FeatureRow;
use crate::model::{HeadsWeights, LoadedModel};
use crate::rng::NormalRng;

pub struct Trainer {
    pub heads: TchHeads,
    pub optim: AdamW,
    pub config: TrainConfig,
}

impl Trainer {
    /// Starts from `weights` with `anchors` frozen beside them.
    pub fn new(
        weights: &HeadsWeights,
        anchors: &HeadsWeights,
        config: TrainConfig,
        device: Device,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        tch::manual_seed(config.seed as i64);
        tch::set_num_threads(config.threads.max(1) as i32);
        let heads = TchHeads::new(weights, anchors, device)?;
        let optim = AdamW::new(&heads.params);
        Ok(Self {
            heads,
            optim,
            config,
        })
    }

    /// Starts from a model's heads (its anchors when it has them, else its current weights).
    pub fn from_model(
        model: &LoadedModel,
        config: TrainConfig,
        device: Device,
    ) -> Result<Self, TrainError> {
        let weights = HeadsWeights::from_onnx(&model.heads_bytes)?;
        let anchors = match &model.anchors_bytes {
            Some(b) => HeadsWeights::from_onnx(b)?,
            None => weights.clone(),
        };
        Self::new(&weights, &anchors, config, device)
    }

    /// Restores heads, anchors, moments and step from a checkpoint directory.
    pub fn resume(dir: &Path, device: Device) -> Result<Self, TrainError> {
        let (meta, tensors) = checkpoint::read(dir, device)?;
        let get = |name: String| {
            tensors
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| TrainError::Checkpoint {
                    path: dir.join(CHECKPOINT_TENSORS),
                    message: format!("has no tensor {name}"),
                })
        };
        let collect = |prefix: &str| {
            (0..6)
                .map(|i| get(format!("{prefix}{i}")))
                .collect::<Result<Vec<_>, _>>()
        };
        let params: Vec<Tensor> = collect("param")?
            .into_iter()
            .map(|t| t.set_requires_grad(true))
            .collect();
        let heads = TchHeads {
            heads: meta.heads,
            dim: meta.dim,
            params,
            anchors: collect("anchor")?,
            device,
        };
        let optim = AdamW {
            m: collect("m")?,
            v: collect("v")?,
            step: meta.step,
        };
        tch::set_num_threads(meta.config.threads.max(1) as i32);
        Ok(Self {
            heads,
            optim,
            config: meta.config,
        })
    }

    pub fn step(&self) -> u64 {
        self.optim.step
    }

    /// One optimiser step on a batch. A batch with no labelled step still steps (anchor term
    /// only), so schedules stay aligned, and never yields NaN.
    pub fn train_step(&mut self, batch: &LabelledBatch) -> Result<StepReport, TrainError> {
        if batch.trajectories > 0 && batch.dim != self.heads.dim {
            return Err(TrainError::Dimension {
                got: batch.dim,
                expected: self.heads.dim,
                where_: String::new(),
            });
        }
        let device = self.heads.device;
        let e = self.heads.heads;
        let n = batch.steps() as i64;
        let x = if n > 0 {
            Tensor::from_slice(&batch.features)
                .reshape([n, batch.dim as i64])
                .to_device(device)
        } else {
            Tensor::zeros([0, self.heads.dim as i64], (Kind::Float, device))
        };
        let targets = Tensor::from_slice(&batch.targets).to_device(device);
        let mask = Tensor::from_slice(&batch.mask).to_device(device);
        let use_pair = self.bagging_mask(batch)?;
        let parts = ensemble_loss(
            &self.heads,
            &x,
            &targets,
            &mask,
            &use_pair,
            self.config.lambda,
            self.config.pos_weight_wrong,
        );
        parts.total.backward();
        let loss = parts.total.double_value(&[]);
        let grad_norm = self.optim.step(&mut self.heads.params, &self.config);
        let _ = e;
        Ok(StepReport {
            step: self.optim.step,
            loss,
            bce: parts.bce,
            anchor: parts.anchor,
            grad_norm,
            trajectories: batch.trajectories,
            labelled_steps: batch.mask.iter().filter(|&&m| m > 0.0).count(),
        })
    }

    /// `[steps, E]`: 1 where head e learns from the step's trajectory this step (bagging with
    /// `p_learn`), drawn from (seed, step) so resumed runs draw the same.
    fn bagging_mask(&self, batch: &LabelledBatch) -> Result<Tensor, TrainError> {
        let e = self.heads.heads;
        let mut rng = NormalRng::new(
            self.config.seed ^ (self.optim.step + 1).wrapping_mul(0xA24B_AED4_963E_E407),
        );
        let pairs: Vec<f32> = (0..batch.trajectories * e)
            .map(|_| {
                if self.config.p_learn >= 1.0 || rng.next_unit() <= self.config.p_learn {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let per_traj = Tensor::from_slice(&pairs).reshape([batch.trajectories as i64, e as i64]);
        let index = Tensor::from_slice(&batch.trajectory);
        let expanded = if batch.trajectory.is_empty() {
            Tensor::zeros([0, e as i64], (Kind::Float, Device::Cpu))
        } else {
            per_traj.index_select(0, &index)
        };
        Ok(expanded.to_device(self.heads.device))
    }

    /// The order rows are visited in epoch `epoch`: a seeded shuffle, so a resumed run replays it.
    pub fn epoch_order(&self, rows: usize, epoch: u64) -> Vec<usize> {
        epoch_order(self.config.seed, rows, epoch)
    }

    /// Trains over labelled rows for `epochs`, continuing from the current step (so a resumed
    /// trainer skips what was done). Stops early after `stop_after` total steps, if given.
    pub fn fit(
        &mut self,
        rows: &[FeatureRow],
        epochs: u64,
        stop_after: Option<u64>,
        mut on_step: impl FnMut(&StepReport),
    ) -> Result<(), TrainError> {
        let labelled: Vec<&FeatureRow> = rows.iter().filter(|r| r.label.is_some()).collect();
        if labelled.is_empty() {
            return Err(TrainError::Labels(
                "no labelled trajectories in the features".into(),
            ));
        }
        let bs = self.config.batch_size.max(1);
        let per_epoch = labelled.len().div_ceil(bs) as u64;
        let total = per_epoch * epochs;
        while self.optim.step < total && stop_after.is_none_or(|s| self.optim.step < s) {
            let epoch = self.optim.step / per_epoch;
            let index = (self.optim.step % per_epoch) as usize;
            let order = self.epoch_order(labelled.len(), epoch);
            let chunk = &order[index * bs..((index + 1) * bs).min(order.len())];
            let batch =
                LabelledBatch::from_rows(chunk.iter().map(|&i| labelled[i]), self.heads.dim)?;
            let report = self.train_step(&batch)?;
            if !report.loss.is_finite() {
                return Err(TrainError::Torch(format!(
                    "loss became {} at step {}",
                    report.loss, report.step
                )));
            }
            on_step(&report);
        }
        Ok(())
    }

    /// Probabilities `[N, E]` from the tch forward (the reference for ONNX parity).
    pub fn probabilities(&self, features: &[f32]) -> Result<Vec<f32>, TrainError> {
        let n = (features.len() / self.heads.dim) as i64;
        let x = Tensor::from_slice(features)
            .reshape([n, self.heads.dim as i64])
            .to_device(self.heads.device);
        let probs = tch::no_grad(|| self.heads.forward(&x).sigmoid());
        super::heads::to_vec(&probs)
    }

    fn checkpoint_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
        let mut named: Vec<(String, &Tensor)> = Vec::new();
        for (prefix, list) in [
            ("param", &self.heads.params),
            ("anchor", &self.heads.anchors),
            ("m", &self.optim.m),
            ("v", &self.optim.v),
        ] {
            for (i, t) in list.iter().enumerate() {
                named.push((format!("{prefix}{i}"), t));
            }
        }
        let tensors = checkpoint::tensors_to_bytes(&named)?;
        let meta = CheckpointMeta {
            step: self.optim.step,
            heads: self.heads.heads,
            dim: self.heads.dim,
            config: self.config,
        };
        Ok((
            tensors,
            serde_json::to_vec_pretty(&meta).expect("checkpoint meta serialises"),
        ))
    }

    /// Writes a complete model directory (manifest, heads, anchors, checkpoint) in one rename; the
    /// backbone and tokenizer are those of `base`. Returns the new model version.
    pub fn export(
        &self,
        base: &LoadedModel,
        out: &Path,
        tau: Option<f32>,
    ) -> Result<String, TrainError> {
        let weights = self.heads.finite_weights()?;
        let heads = weights.to_onnx(&[("actprm.step", self.optim.step.to_string())]);
        let anchors = self.heads.anchor_weights()?.to_onnx(&[]);
        let (tensors, meta) = self.checkpoint_bytes()?;
        let mut model = base.clone();
        model.manifest.ensemble_size = self.heads.heads;
        if let Some(t) = tau {
            model.manifest.tau = t;
        }
        model.write_dir(
            out,
            &heads,
            Some(&anchors),
            &[(CHECKPOINT_TENSORS, &tensors), (CHECKPOINT_META, &meta)],
        )?;
        Ok(crate::model::manifest::model_version(
            &model.manifest.name,
            &heads,
        ))
    }
}

/// `0..rows` shuffled (Fisher-Yates) from `(seed, epoch)`: the same order on every machine.
pub fn epoch_order(seed: u64, rows: usize, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = NormalRng::new(seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9)));
    for i in (1..rows).rev() {
        let j = ((rng.next_unit() * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    order
}
