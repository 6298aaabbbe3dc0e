//! `actprm import`: a Hugging Face PRM checkpoint folder (as `huggingface-cli download` leaves
//! it) into an actprm model directory that every command runs unchanged. The decoder becomes an
//! ONNX backbone written here (`decoder.rs`); each family (`family/`, one file each) says how its
//! checkpoints are recognised, how its head becomes actprm heads and how its input becomes the
//! manifest's prompt and step marker. A BERT encoder becomes the default heads' backbone.

mod checkpoint;
mod config;
mod decoder;
pub mod dense;
pub mod encoder;
mod family;
mod files;
mod heads;
mod prompt;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use checkpoint::Checkpoint;
pub use config::HfConfig;
pub use family::Family;

use super::manifest::{Manifest, SeparatorSpec};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("tensor {name} {message}")]
    Tensor { name: String, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Model(#[from] super::ModelError),
}

impl From<crate::model::onnx::GraphError> for ImportError {
    fn from(e: crate::model::onnx::GraphError) -> Self {
        Self::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// What the importers add to the graph builder: weights read from a checkpoint, and the
/// backbone's I/O contract when the graph is written.
impl crate::model::onnx::Graph {
    /// The checkpoint's tensor `name` (checked to have `dims`), as an f32 weight of that name.
    pub fn weight(
        &mut self,
        weights: &Checkpoint,
        name: &str,
        dims: &[usize],
    ) -> Result<String, ImportError> {
        self.weight_in(false, weights, name, dims)
    }

    /// The checkpoint's tensor `name` as a weight in f16 when `half`, else in f32.
    pub fn weight_in(
        &mut self,
        half: bool,
        weights: &Checkpoint,
        name: &str,
        dims: &[usize],
    ) -> Result<String, ImportError> {
        let values = weights.read_shaped(name, dims)?;
        Ok(self.floats_in(half, name, dims, &values)?)
    }

    /// Writes the backbone to `path`: `inputs` are int64 `[batch, seq]` (`attention_bias`: f32
    /// `[batch, seq, seq]`, the additive mask of a packed token tree), `output` is f32
    /// `[batch, seq, width]`.
    pub fn finish(
        self,
        path: &Path,
        inputs: &[&str],
        output: &str,
        width: usize,
        doc: &str,
    ) -> Result<(), ImportError> {
        use crate::model::backbone::ATTENTION_BIAS;
        use crate::model::onnx::proto::*;
        use prost::Message;
        let (sym, value) = (Dimension::named, ValueInfoProto::tensor);
        let input = inputs
            .iter()
            .map(|&n| match n {
                ATTENTION_BIAS => value(n, DTYPE_FLOAT, vec![sym("batch"), sym("seq"), sym("seq")]),
                _ => value(n, DTYPE_INT64, vec![sym("batch"), sym("seq")]),
            })
            .collect();
        let output = vec![value(
            output,
            DTYPE_FLOAT,
            vec![sym("batch"), sym("seq"), Dimension::fixed(width)],
        )];
        let model = self.into_model("actprm_backbone", input, output, doc, &[])?;
        std::fs::write(path, model.encode_to_vec()).map_err(ImportError::io(path))
    }
}

impl ImportError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What `actprm import` did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub from: String,
    pub output: String,
    pub family: Family,
    pub architecture: String,
    pub layers: usize,
    pub hidden_size: usize,
    pub feature_size: usize,
    pub ensemble_size: usize,
    pub stored_dtypes: Vec<String>,
    /// `--dtype`: how the backbone's dense layers were written.
    pub dense: String,
    pub step_marker: String,
    pub max_length: usize,
    pub seconds: f64,
}

impl crate::report::Report for ImportReport {
    fn table(&self) -> String {
        format!(
            "imported       {}\n  family       {} ({})\n  backbone     {} layers, hidden {}, weights {}, dense {}\n  \
             heads        {} on {} features\n  step marker  {:?}\n  context      {} tokens\nmodel          {}\nseconds        {:.1}\n",
            self.from,
            self.family.name(),
            self.architecture,
            self.layers,
            self.hidden_size,
            self.stored_dtypes.join(", "),
            self.dense,
            self.ensemble_size,
            self.feature_size,
            self.step_marker,
            self.max_length,
            self.output,
            self.seconds
        )
    }
}

/// Longest sequence an imported model is given at once; longer trajectories are scored in
/// windows that repeat the prompt (attention cost grows with its square).
const MAX_CONTEXT: usize = 4096;

/// Imports `from` into the model directory `output` (written whole or not at all).
pub fn import(
    from: &Path,
    output: &Path,
    family: Family,
    dtype: dense::Precision,
) -> Result<ImportReport, ImportError> {
    let started = std::time::Instant::now();
    let bert = family == Family::BertEncoder
        || (family == Family::Auto && family::bert_encoder::detect(from)?);
    if bert {
        if dtype == dense::Precision::F16 {
            return Err(ImportError::Unsupported(
                "--dtype f16 is written for decoders; BERT encoders take f32, int8 or int8-rows"
                    .into(),
            ));
        }
        return family::bert_encoder::import(from, output, dtype, started);
    }
    if dtype == dense::Precision::Int8Rows {
        // measured on the tiny reference fixtures: per-token int8 activations moved decoder step
        // probabilities by up to 0.5 (decoder activations carry outlier channels that one scale
        // per token does not resolve); decoders get 8-bit weights with f32 activations instead
        return Err(ImportError::Unsupported(
            "--dtype int8-rows quantises activations, which decoders cannot carry (step \
             probabilities of the reference fixtures moved by up to 0.5); use --dtype int8 (8-bit \
             weights, f32 activations) or f32"
                .into(),
        ));
    }
    let config = HfConfig::read(from)?;
    let weights = Checkpoint::open(from)?;
    let family = match family {
        Family::Auto => family::detect(&config, &weights)?,
        f => f,
    };
    let Some(decoder) = family.decoder() else {
        return Err(ImportError::Unsupported(format!(
            "{} is not a decoder family",
            family.name()
        )));
    };
    let tokenizer_path = from.join("tokenizer.json");
    let tokenizer_bytes = files::read_bounded(&tokenizer_path, files::TOKENIZER_LIMIT)?;
    let tokenizer =
        tokenizers::Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| ImportError::File {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
    let format = decoder.input_format(&family::FormatInput {
        tokenizer: &tokenizer,
        tokenizer_config: prompt::TokenizerConfig::read(from)?,
        config: &config,
        from,
    })?;
    let source = Source {
        from,
        config: &config,
        weights: &weights,
        tokenizer: &tokenizer_bytes,
    };
    let (feature_size, ensemble_size, max_length) = staged(output, |staging| {
        write_model(&source, staging, family, decoder, &format, dtype)
    })?;
    Ok(ImportReport {
        from: from.display().to_string(),
        output: output.display().to_string(),
        family,
        architecture: config.architectures.join(", "),
        layers: config.num_hidden_layers,
        hidden_size: config.hidden_size,
        feature_size,
        ensemble_size,
        stored_dtypes: weights.dtypes.clone(),
        dense: dtype.name().into(),
        step_marker: format.marker.clone(),
        max_length,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs `write` on a fresh staging folder beside `output`, then swaps it in as `output` whole;
/// on any failure, and on a panic, the staging folder is removed and `output` is left as it was.
pub(super) fn staged<R>(
    output: &Path,
    write: impl FnOnce(&Path) -> Result<R, ImportError>,
) -> Result<R, ImportError> {
    let staging = crate::sink::atomic::temp_path(output, &crate::sink::atomic::process_tag());
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(ImportError::io(&staging))?;
    // removes the staging folder on every way out but the rename into place, an unwind included
    let mut guard = StagingGuard(Some(staging.clone()));
    let written = write(&staging).and_then(|result| {
        let ours = crate::model::manifest::written_by_actprm(output, &staging);
        crate::sink::atomic::replace_dir(&staging, output, &ours)
            .map(|_| result)
            .map_err(|e| ImportError::File {
                path: output.to_path_buf(),
                message: e.to_string(),
            })
    });
    if written.is_ok() {
        guard.0 = None;
    }
    written
}

/// Removes the staging folder it holds when dropped: on an error return and on an unwind alike.
struct StagingGuard(Option<PathBuf>);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Some(staging) = self.0.take() {
            let _ = std::fs::remove_dir_all(staging);
        }
    }
}

/// What a decoder import reads from the checkpoint folder, read once and checked.
struct Source<'a> {
    from: &'a Path,
    config: &'a HfConfig,
    weights: &'a Checkpoint,
    /// `tokenizer.json` as read (bounded), copied into the model directory.
    tokenizer: &'a [u8],
}

/// Writes the model's files into `staging`; returns (feature size, E, context).
fn write_model(
    source: &Source<'_>,
    staging: &Path,
    family: Family,
    decoder: &dyn family::DecoderFamily,
    format: &prompt::InputFormat,
    dtype: dense::Precision,
) -> Result<(usize, usize, usize), ImportError> {
    let Source {
        from,
        config,
        weights,
        tokenizer,
    } = *source;
    crate::failpoint::hit("import-write");
    let (feature_layer, heads, anchors) = decoder.heads(config, weights, format.candidates)?;
    let feature_size =
        decoder::write_backbone(config, weights, "model.", feature_layer, dtype, staging)?;
    if heads.dim != feature_size {
        return Err(ImportError::Unsupported(format!(
            "the heads take {} features, the backbone gives {feature_size}",
            heads.dim
        )));
    }
    let copy = staging.join("tokenizer.json");
    std::fs::write(&copy, tokenizer).map_err(ImportError::io(&copy))?;
    let name = from
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    let max_length = config.max_position_embeddings.min(MAX_CONTEXT);
    let manifest = Manifest {
        check: Default::default(),
        attention: Some(crate::model::manifest::Attention::Causal),
        attention_heads: Some(config.num_attention_heads),
        name: name.clone(),
        backbone: "backbone.onnx".into(),
        backbone_sha256: None,
        backbone_precision: None,
        backbone_builds: Default::default(),
        tokenizer: "tokenizer.json".into(),
        heads: "heads.onnx".into(),
        anchors: Some("anchors.onnx".into()),
        hidden_size: feature_size,
        ensemble_size: heads.heads,
        max_length,
        max_problem_tokens: max_length / 2,
        separator: SeparatorSpec {
            bos: None,
            problem_end: None,
            step: format.marker.clone(),
            eos: None,
        },
        prompt: Some(format.prompt.clone()),
        tau: 0.5,
        seed: 0,
        provenance: format!(
            "actprm import of {} ({}, {}), weights {}, dense layers {}",
            from.display(),
            family.name(),
            config.architectures.join(", "),
            weights.dtypes.join(", "),
            dtype.name()
        ),
    };
    let meta = [("actprm.imported_from", name.clone())];
    let write = |file: &str, bytes: &[u8]| {
        let path = staging.join(file);
        std::fs::write(&path, bytes).map_err(ImportError::io(&path))
    };
    write("heads.onnx", &heads.to_onnx(&meta))?;
    write("anchors.onnx", &anchors.to_onnx(&meta))?;
    write(
        super::manifest::MANIFEST_FILE,
        serde_json::to_string_pretty(&manifest)
            .expect("manifest serialises")
            .as_bytes(),
    )?;
    Ok((feature_size, heads.heads, max_length))
}

/// `architectures` of `config.json`.
pub(super) fn architectures(from: &Path) -> Result<Vec<String>, ImportError> {
    let v = files::read_json(&from.join("config.json"))?;
    Ok(v.get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}
