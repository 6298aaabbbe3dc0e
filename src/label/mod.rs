//! Labelling: turning a selected trajectory into step labels. Every labeller (the pool column that
//! simulates the judge, or a real judge over HTTP) implements [`Labeller`], so the active loop and
//! `actprm label` do not care where labels come from. Every label form reduces to the first-error
//! index (-1 = all steps correct).

pub mod format;
pub mod judge;
pub mod pool;

pub use format::{LabelFormat, LabelOutput};

pub use pool::{
    first_error_from_steps, first_error_labels, step_targets, LabelColumn, LabelColumnError,
    StepLabelForm,
};

/// `--label-budget`, and the `label_budget` key of a pipeline file's label stage.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    clap::Args,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(default)]
pub struct LabelBudget {
    /// At most this many labels (rows keep flowing, recorded as over budget).
    #[arg(long)]
    pub label_budget: Option<u64>,
}

crate::settings! {
    /// How a judge label run sends rows and keeps its answers: flags of `actprm label`, keys of a
    /// pipeline file's label stage (mode: judge).
    #[derive(
        Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
    )]
    #[serde(default)]
    pub struct LabelRun {
        /// Answer cache directory (default: OUTPUT/judge-cache); a rerun pays only for new answers.
        #[arg(long)]
        pub cache: Option<std::path::PathBuf>,
        /// Keep no answer cache.
        #[arg(long, conflicts_with = "cache")]
        pub no_cache: bool,
        /// Rows per batch read and sent to the judge (without a score stage before it).
        #[arg(long)]
        pub batch_rows: usize = 64,
    }
}

impl LabelRun {
    /// Where answers are cached for a run writing `output` (`None`: not cached).
    pub fn cache_for(&self, output: &std::path::Path) -> Option<std::path::PathBuf> {
        (!self.no_cache).then(|| {
            self.cache
                .clone()
                .unwrap_or_else(|| output.join("judge-cache"))
        })
    }
}

/// One trajectory to label; `key` identifies it in the caller's stream (e.g. file + row).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRequest {
    pub key: String,
    pub problem: String,
    pub steps: Vec<String>,
    /// The label already in the data, if any (used by the pool labeller only).
    pub pool_label: Option<i32>,
}

/// The result for one request: never dropped, either labelled or unlabelled with a reason.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelOutcome {
    Labelled { first_error: i32 },
    Unlabelled { reason: String, raw: Option<String> },
}

impl LabelOutcome {
    pub fn first_error(&self) -> Option<i32> {
        match self {
            Self::Labelled { first_error } => Some(*first_error),
            Self::Unlabelled { .. } => None,
        }
    }
}

/// A source of labels. Returns exactly one outcome per request, in order.
pub trait Labeller {
    fn label(&mut self, requests: &[LabelRequest]) -> Vec<LabelOutcome>;
    /// Short name for logs and the decision record (`pool`, `judge:<model>`).
    fn name(&self) -> String;
}

/// Pool mode: reveals the label already in the data, simulating the judge.
#[derive(Debug, Default, Clone, Copy)]
pub struct PoolLabeller {
    pub revealed: u64,
}

impl Labeller for PoolLabeller {
    fn label(&mut self, requests: &[LabelRequest]) -> Vec<LabelOutcome> {
        requests
            .iter()
            .map(|r| match r.pool_label {
                Some(l) if l >= -1 && l < r.steps.len() as i32 => {
                    self.revealed += 1;
                    LabelOutcome::Labelled { first_error: l }
                }
                Some(l) => LabelOutcome::Unlabelled {
                    reason: format!("pool label {l} out of range for {} steps", r.steps.len()),
                    raw: None,
                },
                None => LabelOutcome::Unlabelled {
                    reason: "the pool has no label for this row".into(),
                    raw: None,
                },
            })
            .collect()
    }

    fn name(&self) -> String {
        "pool".into()
    }
}
