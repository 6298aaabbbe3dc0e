//! Backbone fine-tuning: the encoder's top layers and the E heads learn together from labelled
//! trajectories (ActPRM's loss, the heads anchored as in `Trainer`, the encoder at its own smaller
//! rate), and the result is exported as a model directory whose backbone graphs actprm writes
//! from the fine-tuned fp32 weights.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::config::TrainConfig;
use super::encoder::TchEncoder;
use super::heads::{to_vec, TchHeads};
use super::loss::ensemble_loss;
use super::optim::AdamW;
use super::{StepReport, TrainError};
use crate::label::step_targets;
use crate::model::import::dense::Precision;
use crate::model::import::encoder::build_backbone;
use crate::model::manifest::file_sha256;
use crate::model::{HeadsWeights, LoadedModel};
use crate::tokenise::TokenisedTrajectory;

/// The backbone file of a fine-tuned model directory, built per precision from the weights beside it.
pub const FINETUNED_BACKBONE: &str = "backbone-{precision}.onnx";

/// The file of a fine-tuning checkpoint (libtorch's format, as the heads trainer's).
pub const FINETUNE_CHECKPOINT: &str = "finetune.ot";

/// The precisions built (and pinned) at export: the CPU and the CUDA default.
const EXPORTED_PRECISIONS: [Precision; 2] = [Precision::Int8Rows, Precision::F32];

/// A labelled trajectory ready for the encoder: its windows and its first-error label.
pub struct TokenisedExample {
    pub trajectory: TokenisedTrajectory,
    /// 0-based first wrong step, -1 = all correct.
    pub label: i32,
}

pub struct Finetuner {
    pub encoder: TchEncoder,
    pub heads: TchHeads,
    heads_optim: AdamW,
    encoder_optim: AdamW,
    encoder_params: Vec<Tensor>,
    /// The names of `encoder_params`, for checkpoints.
    encoder_names: Vec<String>,
    /// The heads' rate, schedule, anchor weight and class weight.
    pub config: TrainConfig,
    /// Peak rate of the encoder (full fine-tuning's usual 1e-5 order).
    pub encoder_lr: f64,
}

impl Finetuner {
    /// Starts from `base`'s heads (anchored to its anchors) and the encoder in `weights_dir`.
    pub fn new(
        base: &LoadedModel,
        weights_dir: &Path,
        trainable_layers: usize,
        config: TrainConfig,
        encoder_lr: f64,
        device: Device,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        crate::limits::positive("backbone_lr", encoder_lr)?;
        tch::set_num_threads(config.threads.max(1) as i32);
        let encoder = TchEncoder::open(weights_dir, trainable_layers, device, base.step_causal())?;
        let weights = HeadsWeights::from_onnx(&base.heads_bytes)?;
        let anchors = match &base.anchors_bytes {
            Some(b) => HeadsWeights::from_onnx(b)?,
            None => weights.clone(),
        };
        if weights.dim != encoder.hidden_size() {
            return Err(TrainError::Dimension {
                got: encoder.hidden_size(),
                expected: weights.dim,
                where_: format!(" (the encoder in {})", weights_dir.display()),
            });
        }
        let heads = TchHeads::new(&weights, &anchors, device)?;
        let (encoder_names, encoder_params): (Vec<String>, Vec<Tensor>) =
            encoder.trainable().into_iter().unzip();
        Ok(Self {
            heads_optim: AdamW::new(&heads.params),
            encoder_optim: AdamW::new(&encoder_params),
            encoder_params,
            encoder_names,
            encoder,
            heads,
            config,
            encoder_lr,
        })
    }

    pub fn step(&self) -> u64 {
        self.heads_optim.step
    }

    /// Step features `[steps, H]` of the examples, all windows in one padded batch.
    fn features(&self, examples: &[&TokenisedExample], train: bool) -> Tensor {
        let windows: Vec<_> = examples
            .iter()
            .flat_map(|e| e.trajectory.windows.iter())
            .map(|w| w.input())
            .collect();
        self.encoder.separator_features(&windows, train)
    }

    /// One optimiser step of encoder and heads on a batch of trajectories.
    pub fn train_step(&mut self, batch: &[&TokenisedExample]) -> Result<StepReport, TrainError> {
        let device = self.heads.device;
        let (mut targets, mut mask) = (Vec::new(), Vec::new());
        for example in batch {
            let steps = example.trajectory.steps;
            if example.label < -1 || example.label >= steps as i32 {
                return Err(TrainError::Labels(format!(
                    "first-error label {} is out of range for {steps} steps",
                    example.label
                )));
            }
            let (t, m) = step_targets(example.label, steps);
            targets.extend(t);
            mask.extend(m);
        }
        // dropout draws from (seed, step), so a resumed run draws what the uninterrupted one did
        tch::manual_seed(self.config.seed.wrapping_add(self.step()) as i64);
        let x = self.features(batch, true);
        let n = targets.len() as i64;
        let use_pair = Tensor::ones([n, self.heads.heads as i64], (Kind::Float, device));
        let parts = ensemble_loss(
            &self.heads,
            &x,
            &Tensor::from_slice(&targets).to_device(device),
            &Tensor::from_slice(&mask).to_device(device),
            &use_pair,
            self.config.lambda,
            self.config.pos_weight_wrong,
        );
        parts.total.backward();
        let loss = parts.total.double_value(&[]);
        if !loss.is_finite() {
            return Err(TrainError::Torch(format!(
                "loss became {loss} at step {}",
                self.step() + 1
            )));
        }
        let grad_norm = self.heads_optim.step(&mut self.heads.params, &self.config);
        if !self.encoder_params.is_empty() {
            let encoder_config = TrainConfig {
                lr: self.encoder_lr,
                ..self.config
            };
            self.encoder_optim
                .step(&mut self.encoder_params, &encoder_config);
        }
        Ok(StepReport {
            step: self.heads_optim.step,
            loss,
            bce: parts.bce,
            anchor: parts.anchor,
            grad_norm,
            trajectories: batch.len(),
            labelled_steps: mask.iter().filter(|&&m| m > 0.0).count(),
        })
    }

    /// Writes what resuming needs (the learning tensors, both optimisers' moments, the step) as
    /// `finetune.ot` in `dir`, with the `extra` files (the run's record), replacing `dir` whole.
    pub fn save_checkpoint(&self, dir: &Path, extra: &[(&str, &[u8])]) -> Result<(), TrainError> {
        let mut named: Vec<(String, &Tensor)> = Vec::new();
        for (i, t) in self.heads.params.iter().enumerate() {
            named.push((format!("heads.{i}"), t));
            named.push((format!("heads.m.{i}"), &self.heads_optim.m[i]));
            named.push((format!("heads.v.{i}"), &self.heads_optim.v[i]));
        }
        for (i, (name, t)) in self
            .encoder_names
            .iter()
            .zip(&self.encoder_params)
            .enumerate()
        {
            named.push((format!("encoder.{name}"), t));
            named.push((format!("encoder.m.{name}"), &self.encoder_optim.m[i]));
            named.push((format!("encoder.v.{name}"), &self.encoder_optim.v[i]));
        }
        let step = Tensor::from_slice(&[self.step() as i64]);
        named.push(("step".into(), &step));
        let bytes = super::checkpoint::tensors_to_bytes(&named)?;
        let io = |e: crate::sink::SinkError| TrainError::Checkpoint {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let staging = crate::sink::atomic::temp_path(dir, &crate::sink::atomic::process_tag());
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .and_then(|()| std::fs::write(staging.join(FINETUNE_CHECKPOINT), &bytes))
            .and_then(|()| {
                extra
                    .iter()
                    .try_for_each(|(name, b)| std::fs::write(staging.join(name), b))
            })
            .map_err(|e| TrainError::Checkpoint {
                path: staging.clone(),
                message: e.to_string(),
            })?;
        // the checkpoint folder is actprm's own (`OUT.checkpoint`): what it wrote is what the new
        // one writes; anything else found there is kept
        let ours = |name: &str| staging.join(name).exists();
        crate::sink::atomic::replace_dir(&staging, dir, &ours).map_err(io)
    }

    /// Continues from a checkpoint `save_checkpoint` wrote; returns its step.
    pub fn restore(&mut self, dir: &Path) -> Result<u64, TrainError> {
        let path = dir.join(FINETUNE_CHECKPOINT);
        let tensors: BTreeMap<String, Tensor> =
            Tensor::load_multi_with_device(&path, self.heads.device)
                .map_err(|e| TrainError::Checkpoint {
                    path: path.clone(),
                    message: format!("unreadable: {e}"),
                })?
                .into_iter()
                .collect();
        let get = |name: String| {
            tensors.get(&name).ok_or_else(|| TrainError::Checkpoint {
                path: path.clone(),
                message: format!("has no tensor {name} (a checkpoint of other settings?)"),
            })
        };
        tch::no_grad(|| -> Result<(), TrainError> {
            for i in 0..self.heads.params.len() {
                self.heads.params[i].copy_(get(format!("heads.{i}"))?);
                self.heads_optim.m[i] = get(format!("heads.m.{i}"))?.shallow_clone();
                self.heads_optim.v[i] = get(format!("heads.v.{i}"))?.shallow_clone();
            }
            for (i, name) in self.encoder_names.iter().enumerate() {
                self.encoder_params[i].copy_(get(format!("encoder.{name}"))?);
                self.encoder_optim.m[i] = get(format!("encoder.m.{name}"))?.shallow_clone();
                self.encoder_optim.v[i] = get(format!("encoder.v.{name}"))?.shallow_clone();
            }
            Ok(())
        })?;
        let step = get("step".into())?.int64_value(&[0]) as u64;
        self.heads_optim.step = step;
        self.encoder_optim.step = step;
        Ok(step)
    }

    /// Step probabilities `[steps, E]` of the examples, without dropout or gradients.
    pub fn probabilities(&self, examples: &[&TokenisedExample]) -> Result<Vec<f32>, TrainError> {
        let probs = tch::no_grad(|| {
            self.heads
                .forward(&self.features(examples, false))
                .sigmoid()
        });
        to_vec(&probs)
    }

    /// Step features `[steps, H]` (what the exported backbone graph must reproduce).
    pub fn step_features(&self, examples: &[&TokenisedExample]) -> Result<Vec<f32>, TrainError> {
        to_vec(&tch::no_grad(|| self.features(examples, false)))
    }

    /// Writes a complete model directory in one rename: the fine-tuned `model.safetensors` and
    /// `config.json`, the backbone graphs built from them (int8-rows and f32, each pinned in the
    /// manifest), heads and anchors; the tokenizer is `base`'s. Returns the new model version.
    pub fn export(
        &self,
        base: &LoadedModel,
        out: &Path,
        tau: Option<f32>,
        provenance: &str,
    ) -> Result<String, TrainError> {
        let weights = self.heads.finite_weights()?;
        let scratch = crate::sink::atomic::temp_path(
            &out.with_extension("weights"),
            &crate::sink::atomic::process_tag(),
        );
        let _ = std::fs::remove_dir_all(&scratch);
        let result = self.export_with(base, out, tau, provenance, &weights, &scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    fn export_with(
        &self,
        base: &LoadedModel,
        out: &Path,
        tau: Option<f32>,
        provenance: &str,
        weights: &HeadsWeights,
        scratch: &Path,
    ) -> Result<String, TrainError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        };
        self.encoder.save(scratch)?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut builds = BTreeMap::new();
        for precision in EXPORTED_PRECISIONS {
            let name = FINETUNED_BACKBONE.replace("{precision}", precision.name());
            let path = scratch.join(&name);
            build_backbone(scratch, &path, precision, base.step_causal()).map_err(|e| {
                TrainError::Checkpoint {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            builds.insert(precision.name().to_string(), file_sha256(&path)?);
            files.push((name, read(&path)?));
        }
        for name in ["model.safetensors", "config.json"] {
            files.push((name.to_string(), read(&scratch.join(name))?));
        }
        let heads = weights.to_onnx(&[("actprm.step", self.step().to_string())]);
        let anchors = self.heads.anchor_weights()?.to_onnx(&[]);
        let mut model = base.clone();
        let manifest = &mut model.manifest;
        if !manifest.name.ends_with("-ft") {
            manifest.name = format!("{}-ft", manifest.name);
        }
        manifest.backbone = FINETUNED_BACKBONE.to_string();
        manifest.backbone_sha256 = None;
        manifest.backbone_precision = Some(manifest.backbone_precision.unwrap_or_default());
        manifest.backbone_builds = builds;
        manifest.ensemble_size = self.heads.heads;
        manifest.provenance = provenance.to_string();
        if let Some(t) = tau {
            manifest.tau = t;
        }
        let extra: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        model.write_dir_with_own_backbone(out, &heads, Some(&anchors), &extra)?;
        Ok(crate::model::manifest::model_version(
            &model.manifest.name,
            &heads,
        ))
    }
}
