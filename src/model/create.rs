//! New model directories: the default backbone with freshly initialised heads (`init-model`), and
//! a tiny backbone with the same input/output contract for scale and crash tests (`tiny-model`).

use std::path::{Path, PathBuf};

use super::{HeadsWeights, LoadedModel, ModelError};
use crate::limits::at_least;

/// Writes the embedded default backbone with E heads initialised from `seed`; returns the version.
pub fn init_model(
    output: &Path,
    heads: usize,
    seed: u64,
    name: &str,
) -> Result<String, ModelError> {
    at_least("heads", heads, 1)?;
    let base = LoadedModel::embedded()?;
    let weights = HeadsWeights::init(heads, base.manifest.hidden_size, seed);
    let bytes = weights.to_onnx(&[("actprm.seed", seed.to_string())]);
    let mut model = base;
    model.manifest.name = name.to_string();
    model.manifest.ensemble_size = heads;
    model.manifest.seed = seed;
    model.manifest.provenance =
        format!("heads initialised by `actprm init-model --heads {heads} --seed {seed}`");
    model.write_dir(output, &bytes, Some(&bytes), &[])?;
    Ok(LoadedModel::from_dir(output)?.version())
}

/// Writes a model with a tiny backbone of width `dim` and E random heads; returns the version.
pub fn tiny_model(output: &Path, dim: usize, heads: usize) -> Result<String, ModelError> {
    at_least("dim", dim, 1)?;
    at_least("heads", heads, 1)?;
    let base = LoadedModel::embedded()?;
    let backbone = super::tiny::tiny_backbone(30522, dim, 0);
    let weights = HeadsWeights::init(heads, dim, 0);
    let bytes = weights.to_onnx(&[]);
    let mut model = base;
    model.manifest.name = format!("tiny-d{dim}-e{heads}");
    model.manifest.hidden_size = dim;
    model.manifest.ensemble_size = heads;
    model.manifest.backbone = "backbone.onnx".into();
    // relative: resolved inside the new directory, where the file is written
    model.backbone_path = PathBuf::from("backbone.onnx");
    model.manifest.backbone_sha256 = None;
    model.manifest.backbone_precision = None;
    model.manifest.backbone_builds.clear();
    // a running mean over the tokens so far: each token reads only the ones before it
    model.manifest.attention = Some(super::manifest::Attention::Causal);
    // a running mean, no attention scores to hold
    model.manifest.attention_heads = None;
    model.manifest.tau = 0.5;
    model.manifest.provenance = "tiny test backbone (embedding + running mean), random heads: for scale and crash tests only".into();
    model.write_dir(
        output,
        &bytes,
        Some(&bytes),
        &[("backbone.onnx", &backbone)],
    )?;
    Ok(LoadedModel::from_dir(output)?.version())
}
