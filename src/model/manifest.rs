//! The model directory: `manifest.json` naming the backbone, tokenizer and heads, plus the
//! embedded default model compiled into the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::import::dense::Precision;
use super::import::encoder::build_backbone;
use super::{Device, ModelError};

pub const MANIFEST_FILE: &str = "manifest.json";

/// How step separators are placed in the token sequence. Positions are recorded where actprm
/// inserts the tokens, so separator strings inside the problem or a step are never counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparatorSpec {
    /// Token opening the sequence (`[CLS]` for BERT-style backbones), if any.
    pub bos: Option<String>,
    /// Token closing the problem, if any.
    pub problem_end: Option<String>,
    /// Token after every step; the step's feature is the backbone's hidden state here.
    pub step: String,
    /// Token closing the sequence, if any (e.g. `[SEP]` is already the step token for BERT).
    #[serde(default)]
    pub eos: Option<String>,
}

/// The input format of a model trained on a prompt (imported PRMs): the template with the
/// problem in it, then each step's text. Written by `actprm import` from the checkpoint's chat
/// template or the family's reference code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// Text before the first step; `{problem}` marks where the problem goes (or `first_step` holds it).
    pub template: String,
    /// Each step's text: `{step}` is the step, `{index}` its number from 1. In `whole` encoding it
    /// ends with the step marker's text; in `pieces` encoding the marker token is appended.
    #[serde(default = "step_placeholder")]
    pub step: String,
    /// The first step's text when it differs (a chat turn holding the problem too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_step: Option<String>,
    /// Prefixed to a step (`{index}` = its number) unless it already starts with "step".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_label: Option<String>,
    /// Trim the problem's start and each step, as chat templates that `trim` contents do.
    #[serde(default)]
    pub trim: bool,
    #[serde(default)]
    pub encoding: PromptEncoding,
    /// Let the tokenizer add its special tokens (a BOS) to the whole text.
    #[serde(default)]
    pub add_special_tokens: bool,
}

fn step_placeholder() -> String {
    "{step}".into()
}

/// Whether the exact arithmetic check (`score::check`) joins the heads' verdict: a setting of
/// the model (`check` in its manifest) that `--check` overrides.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckRule {
    /// The model alone.
    #[default]
    Off,
    /// The earlier of the model's first error and the first step with a false equality.
    Min,
}

impl CheckRule {
    pub fn is_off(&self) -> bool {
        *self == Self::Off
    }
}

/// What a token of the backbone may attend to: the property that decides whether a step's score
/// can depend on the steps after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attention {
    /// The prompt and the tokens of the own and earlier steps (an encoder with the `step_index`
    /// input): a step's feature depends on the problem and the steps up to it only.
    StepCausal,
    /// Every earlier token (decoders).
    Causal,
    /// The whole window, later steps included (a plain encoder).
    Bidirectional,
}

impl Attention {
    pub fn name(self) -> &'static str {
        match self {
            Self::StepCausal => "step-causal",
            Self::Causal => "causal",
            Self::Bidirectional => "bidirectional",
        }
    }
}

/// The precision of a backbone actprm writes itself from fp32 weights (`{precision}` in the
/// manifest's `backbone`): the graph is built on first use, once per precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackbonePrecision {
    /// int8-rows on a CPU (measured fastest there at equal quality), f32 on CUDA.
    #[default]
    Auto,
    F32,
    Int8,
    Int8Rows,
}

impl BackbonePrecision {
    /// The graph a run on `device` uses.
    pub fn on(self, device: Device) -> Precision {
        match (self, device) {
            (Self::Auto, Device::Cpu) | (Self::Int8Rows, _) => Precision::Int8Rows,
            (Self::Auto, Device::Cuda(_)) | (Self::F32, _) => Precision::F32,
            (Self::Int8, _) => Precision::Int8,
        }
    }
}

/// The backbone file a run opens, with the hash it must have.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneFile {
    pub path: PathBuf,
    pub sha256: Option<String>,
    /// Set when actprm writes this file itself from the fp32 weights beside it.
    pub build: Option<Precision>,
}

/// Where a templated backbone path names its precision.
const PRECISION_SLOT: &str = "{precision}";

/// How the reference turns the text into ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptEncoding {
    /// The whole text at once; each step's score is read at the token that ends its text.
    #[default]
    Whole,
    /// The template and each step on their own, the marker token appended after each step.
    Pieces,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name; the model version is `name@` + the heads' content hash.
    pub name: String,
    /// Backbone ONNX. Relative to the model directory, or `deps:` + a path in the setup cache.
    pub backbone: String,
    pub backbone_sha256: Option<String>,
    /// With `{precision}` in `backbone`: the graph is written by actprm from the fp32 weights in
    /// that folder, in this precision (`auto`: int8-rows on CPU, f32 on CUDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_precision: Option<BackbonePrecision>,
    /// The sha256 each precision's build must have (the build is deterministic).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backbone_builds: BTreeMap<String, String>,
    /// Hugging Face `tokenizer.json`, same path rules. Its own truncation and padding are ignored.
    pub tokenizer: String,
    /// Heads ONNX graph written by actprm.
    pub heads: String,
    /// The heads' initial weights (ActPRM's anchors), same graph format.
    pub anchors: Option<String>,
    /// Backbone hidden size D.
    pub hidden_size: usize,
    /// Ensemble size E.
    pub ensemble_size: usize,
    /// Backbone context in tokens; longer trajectories are scored in windows.
    pub max_length: usize,
    /// Longest problem prefix kept in a window, so steps always have room.
    pub max_problem_tokens: usize,
    pub separator: SeparatorSpec,
    /// What the backbone's tokens attend to; `None` (manifests before it existed): bidirectional
    /// for an encoder graph without `step_index`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<Attention>,
    /// Query heads of the backbone's attention: a kernel that materialises the attention scores
    /// holds heads x T x T of them per window of T tokens, which caps the batch on the CPU
    /// (`None`: not known, no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_heads: Option<usize>,
    /// The prompt around the steps (imported PRMs); `None`: `separator.bos`, problem, ... only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptSpec>,
    /// Threshold for the predicted first error, chosen on a development set when trained.
    #[serde(default = "default_tau")]
    pub tau: f32,
    /// Whether the exact arithmetic check joins the heads' first error (`min`: the earlier).
    #[serde(default, skip_serializing_if = "CheckRule::is_off")]
    pub check: CheckRule,
    pub seed: u64,
    pub provenance: String,
}

fn default_tau() -> f32 {
    0.5
}

/// A manifest with its files located and the heads read into memory.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub manifest: Manifest,
    /// `None` for the embedded default.
    pub dir: Option<PathBuf>,
    pub backbone_path: PathBuf,
    pub tokenizer_path: PathBuf,
    pub heads_bytes: Vec<u8>,
    pub anchors_bytes: Option<Vec<u8>>,
}

const EMBEDDED_MANIFEST: &str = include_str!("default/manifest.json");
const EMBEDDED_HEADS: &[u8] = include_bytes!("default/heads.onnx");
const EMBEDDED_ANCHORS: &[u8] = include_bytes!("default/anchors.onnx");

/// `name@` + the first 12 hex digits of the heads' sha256: changes whenever the heads change.
pub fn model_version(name: &str, heads_bytes: &[u8]) -> String {
    let digest = Sha256::digest(heads_bytes);
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{name}@{hex}")
}

impl LoadedModel {
    /// Opens a model directory, or the embedded default when `dir` is `None`.
    pub fn open(dir: Option<&Path>) -> Result<Self, ModelError> {
        match dir {
            None => Self::embedded(),
            Some(dir) => Self::from_dir(dir),
        }
    }

    pub fn embedded() -> Result<Self, ModelError> {
        let origin = PathBuf::from("<embedded default model>/manifest.json");
        let manifest: Manifest =
            serde_json::from_str(EMBEDDED_MANIFEST).map_err(|e| ModelError::Manifest {
                path: origin.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            backbone_path: resolve(None, &manifest.backbone),
            tokenizer_path: resolve(None, &manifest.tokenizer),
            manifest,
            dir: None,
            heads_bytes: EMBEDDED_HEADS.to_vec(),
            anchors_bytes: Some(EMBEDDED_ANCHORS.to_vec()),
        })
    }

    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ModelError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let read = |rel: &str| {
            let p = resolve(Some(dir), rel);
            std::fs::read(&p).map_err(|e| ModelError::File {
                path: p,
                message: format!("cannot read: {e}"),
            })
        };
        let heads_bytes = read(&manifest.heads)?;
        let anchors_bytes = manifest.anchors.as_deref().map(read).transpose()?;
        Ok(Self {
            backbone_path: resolve(Some(dir), &manifest.backbone),
            tokenizer_path: resolve(Some(dir), &manifest.tokenizer),
            manifest,
            dir: Some(dir.to_path_buf()),
            heads_bytes,
            anchors_bytes,
        })
    }

    pub fn version(&self) -> String {
        model_version(&self.manifest.name, &self.heads_bytes)
    }

    /// The backbone file a run on `device` opens: for a templated backbone, the build in the
    /// precision the manifest asks for, with that build's pinned hash.
    pub fn backbone_file(&self, device: Device) -> BackboneFile {
        let template = self.backbone_path.to_string_lossy();
        if !template.contains(PRECISION_SLOT) {
            return BackboneFile {
                path: self.backbone_path.clone(),
                sha256: self.manifest.backbone_sha256.clone(),
                build: None,
            };
        }
        let precision = self
            .manifest
            .backbone_precision
            .unwrap_or_default()
            .on(device);
        BackboneFile {
            path: PathBuf::from(template.replace(PRECISION_SLOT, precision.name())),
            sha256: self.manifest.backbone_builds.get(precision.name()).cloned(),
            build: Some(precision),
        }
    }

    /// Whether a backbone actprm writes for this model masks attention by step.
    pub fn step_causal(&self) -> bool {
        self.manifest.attention == Some(Attention::StepCausal)
    }

    /// Checks that the tokenizer exists, with an install hint when the setup cache is missing.
    pub fn check_tokenizer(&self) -> Result<(), ModelError> {
        check_exists(&self.tokenizer_path)
    }

    /// Checks the tokenizer and the backbone a run on `device` opens (and its pinned hash), and
    /// returns the backbone's path. A templated backbone is built here on first use from the
    /// fp32 weights `setup.sh` fetched into its folder (a few seconds, once per cache).
    pub fn check_files(&self, device: Device) -> Result<PathBuf, ModelError> {
        let file = self.backbone_file(device);
        if let (Some(precision), false) = (file.build, file.path.exists()) {
            // one build per process (threads share the temporary name); other processes write
            // their own temporary file and the last rename wins with the same bytes
            static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
            let weights = file.path.parent().unwrap_or(Path::new("."));
            if !file.path.exists() && weights.join("model.safetensors").exists() {
                build_backbone(weights, &file.path, precision, self.step_causal()).map_err(
                    |e| ModelError::File {
                        path: file.path.clone(),
                        message: format!("building the backbone from {}: {e}", weights.display()),
                    },
                )?;
            }
        }
        check_exists(&file.path)?;
        self.check_tokenizer()?;
        if let Some(pinned) = &file.sha256 {
            let got = file_sha256(&file.path)?;
            if !got.eq_ignore_ascii_case(pinned) {
                let remedy = if file.build.is_some() {
                    "delete it and actprm writes it again from the fp32 weights beside it"
                } else {
                    "the default model's files are restored by ./setup.sh"
                };
                return Err(ModelError::File {
                    path: file.path,
                    message: format!(
                        "has sha256 {got}, but the manifest pins {pinned}: the file was changed or \
                         damaged ({remedy})"
                    ),
                });
            }
        }
        Ok(file.path)
    }

    /// Writes this model as a directory (manifest, heads, anchors) whose backbone and tokenizer
    /// point at the same files as this one. Written to a temporary folder, then renamed.
    /// `extra` files (a training checkpoint) go into the same directory, in the same rename.
    pub fn write_dir(
        &self,
        out: &Path,
        heads_bytes: &[u8],
        anchors_bytes: Option<&[u8]>,
        extra: &[(&str, &[u8])],
    ) -> Result<(), ModelError> {
        self.write_dir_inner(out, heads_bytes, anchors_bytes, extra, false)
    }

    /// As `write_dir`, but the backbone is among the `extra` files (a fine-tuned backbone): the
    /// manifest's `backbone` stays as it is, relative to the new directory.
    pub fn write_dir_with_own_backbone(
        &self,
        out: &Path,
        heads_bytes: &[u8],
        anchors_bytes: Option<&[u8]>,
        extra: &[(&str, &[u8])],
    ) -> Result<(), ModelError> {
        self.write_dir_inner(out, heads_bytes, anchors_bytes, extra, true)
    }

    fn write_dir_inner(
        &self,
        out: &Path,
        heads_bytes: &[u8],
        anchors_bytes: Option<&[u8]>,
        extra: &[(&str, &[u8])],
        own_backbone: bool,
    ) -> Result<(), ModelError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| ModelError::File {
                path,
                message: e.to_string(),
            }
        };
        let mut manifest = self.manifest.clone();
        if !own_backbone {
            manifest.backbone = absolute_reference(&self.manifest.backbone, &self.backbone_path);
        }
        manifest.tokenizer = absolute_reference(&self.manifest.tokenizer, &self.tokenizer_path);
        manifest.heads = "heads.onnx".into();
        manifest.anchors = anchors_bytes.map(|_| "anchors.onnx".into());
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let staging = crate::sink::atomic::temp_path(out, &crate::sink::atomic::process_tag());
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(staging.join(MANIFEST_FILE), json).map_err(io(&staging))?;
        std::fs::write(staging.join("heads.onnx"), heads_bytes).map_err(io(&staging))?;
        if let Some(anchors) = anchors_bytes {
            std::fs::write(staging.join("anchors.onnx"), anchors).map_err(io(&staging))?;
        }
        for (name, bytes) in extra {
            std::fs::write(staging.join(name), bytes).map_err(io(&staging))?;
        }
        // fsynced, then swapped in whole: a crash leaves the old model or the new one
        let ours = written_by_actprm(out, &staging);
        crate::sink::atomic::replace_dir(&staging, out, &ours).map_err(|e| ModelError::File {
            path: out.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(())
    }
}

fn check_exists(path: &Path) -> Result<(), ModelError> {
    if path.exists() {
        return Ok(());
    }
    Err(ModelError::File {
        path: path.to_path_buf(),
        message: "missing. The default model's backbone and tokenizer are fetched by ./setup.sh \
                  (or set ACTPRM_DEPS to the folder it filled)"
            .into(),
    })
}

/// A manifest is a few kilobytes; a larger file is not one actprm wrote.
const MANIFEST_LIMIT: u64 = 1 << 20;

/// The manifest in `dir`, if it is one actprm reads (read at most [`MANIFEST_LIMIT`] bytes).
fn own_manifest(dir: &Path) -> Option<Manifest> {
    use std::io::Read;
    let path = dir.join(MANIFEST_FILE);
    if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .ok()?
        .take(MANIFEST_LIMIT)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether `dir` is a model directory actprm wrote: it holds a manifest actprm reads.
pub fn is_model_dir(dir: &Path) -> bool {
    own_manifest(dir).is_some()
}

/// Which entries of the model directory `out` a new export (complete in `staging`) replaces:
/// when `out` is a model directory actprm wrote, `manifest.json`, the files its manifest names
/// and the names the new export writes; otherwise none. Every other entry is carried over.
pub fn written_by_actprm(out: &Path, staging: &Path) -> impl Fn(&str) -> bool {
    let mut ours = std::collections::BTreeSet::new();
    let manifest = own_manifest(out);
    if let Some(m) = &manifest {
        ours.insert(MANIFEST_FILE.to_string());
        let named = [
            Some(&m.backbone),
            Some(&m.tokenizer),
            Some(&m.heads),
            m.anchors.as_ref(),
        ];
        for reference in named.into_iter().flatten() {
            let path = Path::new(reference);
            if reference.starts_with("deps:") || path.is_absolute() {
                continue;
            }
            if let Some(std::path::Component::Normal(first)) = path.components().next() {
                ours.insert(first.to_string_lossy().to_string());
            }
        }
        if let Ok(entries) = std::fs::read_dir(staging) {
            ours.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string()),
            );
        }
    }
    move |name: &str| ours.contains(name)
}

/// `deps:` references stay symbolic (portable across machines); others become absolute.
fn absolute_reference(reference: &str, resolved: &Path) -> String {
    if reference.starts_with("deps:") {
        reference.to_string()
    } else {
        std::fs::canonicalize(resolved)
            .unwrap_or_else(|_| resolved.to_path_buf())
            .display()
            .to_string()
    }
}

fn resolve(dir: Option<&Path>, reference: &str) -> PathBuf {
    if let Some(rest) = reference.strip_prefix("deps:") {
        return super::deps_dir().join(rest);
    }
    let p = Path::new(reference);
    match dir {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// sha256 of a file, hex; computed once per (path, size, modification time) in a process, since
/// every scorer, SQL session and pipeline check opens the backbone.
pub fn file_sha256(path: &Path) -> Result<String, ModelError> {
    use std::collections::HashMap;
    use std::io::Read;
    use std::sync::{Mutex, OnceLock};
    /// (path, size, modification time) -> sha256
    type Seen = HashMap<(PathBuf, u64, std::time::SystemTime), String>;
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    let err = |e: std::io::Error| ModelError::File {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    let key = (
        path.to_path_buf(),
        meta.len(),
        meta.modified().map_err(err)?,
    );
    let seen = SEEN.get_or_init(Default::default);
    if let Some(hex) = seen.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(hex);
    }
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Ok(mut m) = seen.lock() {
        m.insert(key, hex.clone());
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded default names one graph per device, each with its own pin; a manifest can
    /// pin a precision for every device, and a plain path is left as it is.
    #[test]
    fn the_backbone_file_follows_the_device_and_the_manifest() {
        let model = LoadedModel::embedded().unwrap();
        let cpu = model.backbone_file(Device::Cpu);
        let cuda = model.backbone_file(Device::Cuda(0));
        assert!(cpu.path.ends_with("backbone-v3-int8-rows.onnx"), "{cpu:?}");
        assert!(cuda.path.ends_with("backbone-v3-f32.onnx"), "{cuda:?}");
        assert_eq!(cpu.build, Some(Precision::Int8Rows));
        assert_eq!(cuda.build, Some(Precision::F32));
        assert!(cpu.sha256.is_some() && cuda.sha256.is_some() && cpu.sha256 != cuda.sha256);

        let mut pinned = model.clone();
        pinned.manifest.backbone_precision = Some(BackbonePrecision::F32);
        assert_eq!(pinned.backbone_file(Device::Cpu), cuda);

        let mut plain = model;
        plain.backbone_path = PathBuf::from("/models/backbone.onnx");
        plain.manifest.backbone_sha256 = Some("ab".into());
        let file = plain.backbone_file(Device::Cuda(0));
        assert_eq!(file.path, PathBuf::from("/models/backbone.onnx"));
        assert_eq!((file.sha256.as_deref(), file.build), (Some("ab"), None));
    }
}
