//! A BERT sentence encoder (all-MiniLM-L6-v2 and its kin) as the backbone of the embedded
//! default's heads, with the same tokenizer conventions (`[CLS]` problem `[SEP]` step `[SEP]`
//! ...): the encoder graph writer (`encoder.rs`) writes its backbone, and the default's heads and
//! anchors come along unchanged. Recognised by `architectures` naming `BertModel`.

use std::path::Path;

use super::Family;
use crate::model::import::checkpoint::Checkpoint;
use crate::model::import::{dense, encoder, files, staged, ImportError, ImportReport};

/// Whether `from` holds a BERT encoder (read before a decoder's config, which it would fail).
pub(in crate::model::import) fn detect(from: &Path) -> Result<bool, ImportError> {
    Ok(crate::model::import::architectures(from)?
        .iter()
        .any(|a| a == "BertModel"))
}

/// A BERT encoder folder as the backbone of the embedded default's heads (same tokenizer
/// conventions: `[CLS]` problem `[SEP]` step `[SEP]` ...).
pub(in crate::model::import) fn import(
    from: &Path,
    output: &Path,
    dtype: dense::Precision,
    started: std::time::Instant,
) -> Result<ImportReport, ImportError> {
    let config = encoder::read_config(from)?;
    let weights = Checkpoint::open(from)?;
    let default = crate::model::LoadedModel::embedded()?;
    if default.manifest.hidden_size != config.hidden_size {
        return Err(ImportError::Unsupported(format!(
            "the encoder's hidden size is {}, the default heads take {}",
            config.hidden_size, default.manifest.hidden_size
        )));
    }
    if config.max_position_embeddings < default.manifest.max_length {
        return Err(ImportError::File {
            path: from.join("config.json"),
            message: format!(
                "max_position_embeddings is {}; the default heads read windows of {} tokens",
                config.max_position_embeddings, default.manifest.max_length
            ),
        });
    }
    let tokenizer_path = from.join("tokenizer.json");
    let tokenizer = files::read_bounded(&tokenizer_path, files::TOKENIZER_LIMIT)?;
    staged(output, |staging| {
        encoder::write_encoder(
            &config,
            &weights,
            dtype,
            default.step_causal(),
            staging,
            "backbone.onnx",
            true,
        )?;
        let copy = staging.join("tokenizer.json");
        std::fs::write(&copy, &tokenizer).map_err(ImportError::io(&copy))?;
        let mut manifest = default.manifest.clone();
        manifest.name = format!("{}-{}", default.manifest.name, dtype.name());
        manifest.backbone = "backbone.onnx".into();
        manifest.backbone_sha256 = None;
        manifest.backbone_precision = None;
        manifest.backbone_builds.clear();
        manifest.tokenizer = "tokenizer.json".into();
        manifest.provenance = format!(
            "backbone: {} written by actprm import from {} ({dtype:?} dense weights); heads: the \
             embedded default's ({})",
            config_name(from),
            from.display(),
            default.manifest.name
        );
        let write = |file: &str, bytes: &[u8]| {
            let path = staging.join(file);
            std::fs::write(&path, bytes).map_err(ImportError::io(&path))
        };
        write("heads.onnx", &default.heads_bytes)?;
        if let Some(anchors) = &default.anchors_bytes {
            write("anchors.onnx", anchors)?;
        }
        write(
            crate::model::manifest::MANIFEST_FILE,
            serde_json::to_string_pretty(&manifest)
                .expect("manifest serialises")
                .as_bytes(),
        )
    })?;
    Ok(ImportReport {
        from: from.display().to_string(),
        output: output.display().to_string(),
        family: Family::BertEncoder,
        architecture: "BertModel".into(),
        layers: config.num_hidden_layers,
        hidden_size: config.hidden_size,
        feature_size: config.hidden_size,
        ensemble_size: default.manifest.ensemble_size,
        stored_dtypes: weights.dtypes.clone(),
        dense: dtype.name().into(),
        step_marker: default.manifest.separator.step.clone(),
        max_length: default.manifest.max_length,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn config_name(from: &Path) -> String {
    from.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
