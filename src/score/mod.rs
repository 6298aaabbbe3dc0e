//! Scoring: token windows -> backbone features at the separators -> heads -> per-step mean/std,
//! first predicted error and ActPRM's decision.

pub mod batching;
pub mod check;
pub mod output;
pub mod packing;
pub mod texts;

use crate::model::{Backbone, Device, HeadsRunner, LoadedModel, ModelError, RuntimeOptions};
use crate::select::{decide, first_error, step_stats, Decision, SelectionRule};
use crate::tokenise::TokenisedTrajectory;

pub use batching::{plan_batches, CallLimits};
pub use texts::{tokenise_checked, TextScorer};

/// Padded tokens per backbone call on the CPU by default. There small calls win: MiniLM int8 on 2
/// cores scored 8.0 / 9.5 / 11.4 / 15.3 / 14.8 rows/s at budgets 8192 / 4096 / 2048 / 1024 / 512
/// (600 generated PRM800K rows, 2 threads), and peak RSS fell from 2.4 GB to 0.6 GB.
pub const CPU_TOKEN_BUDGET: usize = 1024;

/// Padded tokens per backbone call on CUDA by default: a GPU wants far larger calls, and the
/// fused attention keeps their memory linear in the tokens (GPU-READINESS risk 10).
pub const CUDA_TOKEN_BUDGET: usize = 16384;

/// Attention scores one backbone call may hold on the CPU, summed over heads: ONNX Runtime's CPU
/// attention materialises them (heads x T x T floats per window), so a raised `--token-budget`
/// or a long packed prefix tree cannot ask for more than 1 GiB of them at once (GPU-READINESS
/// risk 11).
pub const CPU_ATTENTION_SCORES: usize = 1 << 28;

/// The same on CUDA, where the fused kernels are expected to keep attention memory linear in the
/// tokens: a safety net (8 GiB of f32 scores) for a kernel that materialises them after all,
/// which the default budget never reaches (4 windows of 4,096 tokens of a 28-head 7B model are
/// 1.9·10⁹ scores).
pub const CUDA_ATTENTION_SCORES: usize = 1 << 31;

/// The scoring knobs shared by `score`, `filter`, `active`, `sql` and pipeline files' score
/// stages: flags and file keys of the same names.
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
pub struct ScoreOptions {
    /// First-error threshold; default: the model's own tau.
    #[arg(long)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tau: Option<f32>,
    #[command(flatten)]
    #[serde(flatten)]
    pub rule: SelectionRule,
    #[command(flatten)]
    #[serde(flatten)]
    pub batching: Batching,
    /// Join the exact arithmetic check to the heads: `min` predicts the earlier of their first
    /// error and the first step that states a false equality; default: the model's own rule.
    #[arg(long, value_enum)]
    pub check: Option<check::CheckRule>,
}

crate::settings! {
    /// How much one backbone call takes: flags of every command that scores (`eval` included) and
    /// keys of a score stage.
    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        clap::Args,
        serde::Serialize,
        serde::Deserialize,
        schemars::JsonSchema,
    )]
    #[serde(default)]
    pub struct Batching {
        /// Padded tokens per backbone call; 0: by device, 1,024 on the CPU (small calls suit
        /// it) and 16,384 on CUDA.
        #[arg(long)]
        pub token_budget: usize = 0,
        /// Windows per backbone call at most.
        #[arg(long)]
        pub max_batch: usize = 32,
        /// Causal decoder models (imported PRMs): compute the tokens that windows of one batch of
        /// rows share (the prompt and problem of a problem's samples, the steps before a branch)
        /// once, in packed token trees of at most --token-budget tokens; every score is the same.
        /// `off`: each window on its own. The default model is step-causal, not causal, and always
        /// scores each window on its own.
        #[arg(long, value_enum)]
        pub prefix_sharing: PrefixSharing = PrefixSharing::On,
        /// Score this many consecutive rows together (several read batches): with prefix
        /// sharing, the prefixes of a problem's samples that a batch boundary splits are still
        /// computed once; without it, windows are sorted by length across the read batches, so
        /// batches hold less padding. Rows stay in input order and every score is the same. At
        /// most the read batch (or 0): each batch on its own. The active loop scores batch by
        /// batch (its heads change between batches).
        #[arg(long)]
        pub share_window: usize = 256,
    }
}

/// Whether shared prefixes are computed once ([`Batching::prefix_sharing`]).
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
pub enum PrefixSharing {
    #[default]
    On,
    Off,
}

impl Batching {
    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        use crate::limits::at_least;
        problems.check(at_least("max_batch", self.max_batch, 1));
    }

    /// The padded tokens per backbone call on `device` (`token_budget`, or the device's default).
    pub fn token_budget_on(&self, device: Device) -> usize {
        match (self.token_budget, device) {
            (0, Device::Cpu) => CPU_TOKEN_BUDGET,
            (0, Device::Cuda(_)) => CUDA_TOKEN_BUDGET,
            (given, _) => given,
        }
    }
}

impl ScoreOptions {
    /// Whether the arithmetic check joins the heads: the `--check` setting, else the model's.
    pub fn check_rule(&self, model: &crate::model::Manifest) -> check::CheckRule {
        self.check.unwrap_or(model.check)
    }

    /// Range checks, for every command and pipeline stage that scores.
    pub fn validate(&self) -> Result<(), crate::limits::SettingError> {
        let mut problems = crate::limits::Problems::default();
        self.problems(&mut problems);
        problems.first()
    }

    pub fn problems(&self, problems: &mut crate::limits::Problems) {
        use crate::limits::fraction;
        if let Some(tau) = self.tau {
            problems.check(fraction("tau", tau, false));
        }
        problems.check(fraction("delta_pred", self.rule.delta_pred, false));
        problems.check(fraction("delta_std", self.rule.delta_std, false));
        self.batching.problems(problems);
    }
}

/// The step features of a batch of windows, `D` floats per separator, window by window, filled
/// as backbone calls return them in their own order.
struct Features {
    values: Vec<f32>,
    /// Where each window's separators start (one more entry than windows).
    offsets: Vec<usize>,
    d: usize,
}

impl Features {
    fn new(separators: impl Iterator<Item = usize>, d: usize) -> Self {
        let mut offsets = vec![0usize];
        for n in separators {
            offsets.push(offsets[offsets.len() - 1] + n);
        }
        Self {
            values: vec![0f32; offsets[offsets.len() - 1] * d],
            offsets,
            d,
        }
    }

    /// Copies one call's output (the separators of the windows `order`, one after another) to
    /// each window's place.
    fn place(&mut self, out: &[f32], order: impl Iterator<Item = usize>) {
        let mut cursor = 0;
        for window in order {
            let start = self.offsets[window] * self.d;
            let len = self.offsets[window + 1] * self.d - start;
            self.values[start..start + len].copy_from_slice(&out[cursor..cursor + len]);
            cursor += len;
        }
    }
}

/// Scores of one trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct RowScore {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// `[steps, E]`, row-major.
    pub head_probs: Vec<f32>,
    pub first_error: i32,
    /// The first step with a false equality, when the arithmetic check is on.
    pub check: Option<usize>,
    pub decision: Decision,
    pub windows: usize,
    pub truncated: bool,
    pub tokens: usize,
    /// The backbone positions this row added: `tokens`, less what it shared with rows before it
    /// in its batch (prefix sharing).
    pub tokens_computed: usize,
}

/// Backbone + heads, owned by the scoring stage.
pub struct StepScorer {
    pub backbone: Backbone,
    pub heads: HeadsRunner,
    pub options: ScoreOptions,
    pub tau: f32,
    /// Per head, `count * longest²` of a backbone call ([`CallLimits::attention_budget`]).
    attention_budget: usize,
}

impl StepScorer {
    /// Opens the model's backbone and heads on `runtime` and checks that they fit together;
    /// `tau` is the options' own or else the model's.
    pub fn open(
        model: &LoadedModel,
        runtime: &RuntimeOptions,
        options: ScoreOptions,
    ) -> Result<Self, ModelError> {
        let mut options = options;
        options.batching.token_budget = options.batching.token_budget_on(runtime.device);
        let backbone = Backbone::open(model, runtime)?;
        let heads = HeadsRunner::open(&model.heads_bytes, model.version(), runtime)?;
        if heads.feature_dim() != backbone.hidden_size() {
            return Err(ModelError::Heads(format!(
                "they take features of dimension {}, the backbone gives {}",
                heads.feature_dim(),
                backbone.hidden_size()
            )));
        }
        let attention_budget = match (runtime.device, model.manifest.attention_heads) {
            (Device::Cpu, Some(heads)) => CPU_ATTENTION_SCORES / heads.max(1),
            (Device::Cuda(_), Some(heads)) => CUDA_ATTENTION_SCORES / heads.max(1),
            (_, None) => usize::MAX,
        };
        Ok(Self {
            backbone,
            heads,
            options,
            tau: options.tau.unwrap_or(model.manifest.tau),
            attention_budget,
        })
    }

    /// What one backbone call may hold.
    fn call_limits(&self) -> CallLimits {
        CallLimits {
            token_budget: self.options.batching.token_budget,
            max_batch: self.options.batching.max_batch,
            attention_budget: self.attention_budget,
        }
    }

    /// Backbone features of every step of every trajectory, in order: `D` floats per step.
    pub fn features(&mut self, items: &[TokenisedTrajectory]) -> Result<Vec<f32>, ModelError> {
        Ok(self.features_counted(items)?.0)
    }

    /// Whether shared prefixes are computed once: a decoder, with sharing on.
    pub fn shares_prefixes(&self) -> bool {
        self.backbone.takes_trees() && self.options.batching.prefix_sharing == PrefixSharing::On
    }

    /// [`Self::features`], and the backbone positions each trajectory added (its tokens, less
    /// those it shared with the trajectories before it when prefixes are shared).
    pub fn features_counted(
        &mut self,
        items: &[TokenisedTrajectory],
    ) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        if self.shares_prefixes() {
            return self.shared_features(items);
        }
        let computed = items.iter().map(|t| t.tokens).collect();
        Ok((self.window_features(items)?, computed))
    }

    /// Every window on its own, padded into batches.
    fn window_features(&mut self, items: &[TokenisedTrajectory]) -> Result<Vec<f32>, ModelError> {
        let windows: Vec<_> = items.iter().flat_map(|t| t.windows.iter()).collect();
        let mut features = Features::new(
            windows.iter().map(|w| w.separators.len()),
            self.backbone.hidden_size(),
        );
        let lengths: Vec<usize> = windows.iter().map(|w| w.ids.len()).collect();
        for group in plan_batches(&lengths, self.call_limits()) {
            let inputs: Vec<_> = group.iter().map(|&i| windows[i].input()).collect();
            let out = self.backbone.separator_features(&inputs)?;
            features.place(&out, group.iter().copied());
        }
        Ok(features.values)
    }

    /// The windows packed into token tries ([`packing`]), each shared token computed once.
    fn shared_features(
        &mut self,
        items: &[TokenisedTrajectory],
    ) -> Result<(Vec<f32>, Vec<usize>), ModelError> {
        let owners: Vec<usize> = items
            .iter()
            .enumerate()
            .flat_map(|(i, t)| std::iter::repeat_n(i, t.windows.len()))
            .collect();
        let inputs: Vec<_> = items
            .iter()
            .flat_map(|t| t.windows.iter().map(|w| w.input()))
            .collect();
        let mut features = Features::new(
            inputs.iter().map(|w| w.separators.len()),
            self.backbone.hidden_size(),
        );
        let longest = inputs.iter().map(|w| w.ids.len()).max().unwrap_or(0);
        let limits = self.call_limits();
        let capacity = limits.pack_capacity().max(longest);
        let packs = packing::pack(&inputs, capacity);
        let mut computed = vec![0usize; items.len()];
        for window in packs.iter().flat_map(|p| &p.windows) {
            computed[owners[window.index]] += window.added;
        }
        let lengths: Vec<usize> = packs.iter().map(|p| p.len()).collect();
        for group in plan_batches(&lengths, limits) {
            let trees: Vec<_> = group.iter().map(|&p| packs[p].input()).collect();
            let gathers: Vec<Vec<u32>> = group
                .iter()
                .map(|&p| {
                    packs[p]
                        .windows
                        .iter()
                        .flat_map(|w| w.separators.iter().copied())
                        .collect()
                })
                .collect();
            let out = self.backbone.tree_features(&trees, &gathers)?;
            let order = group
                .iter()
                .flat_map(|&p| packs[p].windows.iter().map(|w| w.index));
            features.place(&out, order);
        }
        Ok((features.values, computed))
    }

    /// Scores from features (`D` floats per step, trajectories in order).
    pub fn score_features(
        &mut self,
        items: &[TokenisedTrajectory],
        features: &[f32],
    ) -> Result<Vec<RowScore>, ModelError> {
        let probs = self.heads.probabilities(features)?;
        let e = self.heads.ensemble_size();
        let mut cursor = 0;
        Ok(items
            .iter()
            .map(|t| {
                let head_probs = probs[cursor * e..(cursor + t.steps) * e].to_vec();
                cursor += t.steps;
                score_row(head_probs, e, self.tau, self.options.rule, t)
            })
            .collect())
    }

    pub fn score(
        &mut self,
        items: &[TokenisedTrajectory],
    ) -> Result<(Vec<RowScore>, Vec<f32>), ModelError> {
        let (features, computed) = self.features_counted(items)?;
        let mut scores = self.score_features(items, &features)?;
        for (score, computed) in scores.iter_mut().zip(computed) {
            score.tokens_computed = computed;
        }
        Ok((scores, features))
    }
}

pub fn score_row(
    head_probs: Vec<f32>,
    heads: usize,
    tau: f32,
    rule: SelectionRule,
    t: &TokenisedTrajectory,
) -> RowScore {
    let (mean, std) = step_stats(&head_probs, heads);
    RowScore {
        first_error: check::earliest_error(first_error(&mean, tau), t.check),
        check: t.check,
        decision: decide(&mean, &std, rule),
        mean,
        std,
        head_probs,
        windows: t.windows.len(),
        truncated: t.truncated,
        tokens: t.tokens,
        tokens_computed: t.tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_budget_is_the_devices_unless_given() {
        let by_device = Batching::default();
        assert_eq!(by_device.token_budget, 0);
        assert_eq!(by_device.token_budget_on(Device::Cpu), CPU_TOKEN_BUDGET);
        assert_eq!(
            by_device.token_budget_on(Device::Cuda(1)),
            CUDA_TOKEN_BUDGET
        );
        let given = Batching {
            token_budget: 300,
            ..Batching::default()
        };
        assert_eq!(given.token_budget_on(Device::Cuda(0)), 300);
    }
}
