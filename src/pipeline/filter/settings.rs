//! What a filter run is asked to do: its settings (flags and file keys), the job, and the
//! `run.json` fingerprint a resumed run must match.

use serde::{Deserialize, Serialize};

use super::super::score::ScoreJob;
use super::super::PipelineError;
use crate::model::LoadedModel;
pub use crate::select::Keep;

/// `--shard i/n`: this process handles the units whose stable hash is i modulo n (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("is `{s}`; expected i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl TryFrom<String> for Shard {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

impl schemars::JsonSchema for Shard {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Shard".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+/[0-9]+$",
            "description": "i/n with 0 <= i < n"
        })
    }
}

/// One unit as a Ray task names it: `FILE#GROUP`, or `FILE#file` for a file whose footer is
/// unreadable (it is one unit). FILE is the path the input listing gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRef {
    pub path: std::path::PathBuf,
    pub group: Option<usize>,
}

impl std::str::FromStr for UnitRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, group) = s
            .rsplit_once('#')
            .ok_or_else(|| format!("is `{s}`; expected FILE#GROUP or FILE#file"))?;
        let group = match group {
            "file" => None,
            g => Some(
                g.parse()
                    .map_err(|_| format!("`{g}` in `{s}` is not a row group number"))?,
            ),
        };
        Ok(Self {
            path: path.into(),
            group,
        })
    }
}

impl std::fmt::Display for UnitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.group {
            Some(g) => write!(f, "{}#{g}", self.path.display()),
            None => write!(f, "{}#file", self.path.display()),
        }
    }
}

crate::settings! {
/// What `filter` keeps and how it splits and resumes: its flags, and the keys of a pipeline
/// file's filter stage.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct FilterSettings {
    #[command(flatten)]
    #[serde(flatten)]
    pub keep: crate::select::KeepRate,
    /// With --keep-rate: most-uncertain (each batch's most uncertain rows, the paper's
    /// ranking) or diverse (uncertain rows spread over clusters of the rows' step features,
    /// chosen as `active --picks diverse` chooses).
    #[arg(long, value_enum)]
    pub picks: crate::select::RatePicks = crate::select::RatePicks::MostUncertain,
    #[command(flatten)]
    #[serde(flatten)]
    pub quality: Quality,
    /// This process's share of the units, as i/n (0-based).
    #[arg(long)]
    pub shard: Shard = Shard::default(),
    /// Also write the rows that were not kept.
    #[arg(long)]
    pub write_skipped: bool,
    /// Report keep rates per value of this column.
    #[arg(long)]
    pub group_by: Option<String>,
    /// `trl`: the kept rows also get TRL's `prompt`, `completions` and `labels`, labelled by the
    /// model's predicted first error (a PRM-labelled set for TRL's PRMTrainer or SFT).
    #[command(flatten)]
    #[serde(flatten)]
    pub label_output: crate::label::LabelOutput,
    /// Discard an earlier run's outputs in the output folder instead of resuming it (a rerun
    /// with other settings is refused without this).
    #[arg(long)]
    pub restart: bool,
}
}

/// Keeping the good rows instead of the uncertain ones (flags of `filter`, keys of a filter
/// stage). With none of them, ActPRM's uncertainty rule (or `--keep-rate`) decides.
#[derive(
    Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct Quality {
    /// Add a `reward` column: each trajectory's reward from its step scores (min: its worst
    /// step, what PRM papers rank best-of-n by; last; mean; prod).
    #[arg(long, value_enum)]
    pub reward: Option<crate::select::reward::Reward>,
    /// Keep the rows for which this SQL condition over the scored columns holds (DataFusion
    /// expressions, the prm_* functions included), e.g. `first_error = -1 AND reward > 0.6`.
    #[arg(id = "where", long = "where", value_name = "CONDITION")]
    #[serde(rename = "where")]
    pub condition: Option<String>,
    /// Best-of-n: keep the K rows with the highest reward (--reward, default min) of each group
    /// of consecutive rows with the same --per value (after --where). A group must lie within
    /// one row group of its file; one that runs on into the next is refused.
    #[arg(long, requires = "per", value_name = "K")]
    pub top_k: Option<usize>,
    /// The column whose value names a row's group for --top-k (a problem id, or the problem).
    #[arg(long, requires = "top_k", value_name = "COLUMN")]
    pub per: Option<String>,
}

impl Quality {
    /// Whether these settings replace the uncertainty rule.
    pub fn selects(&self) -> bool {
        self.condition.is_some() || self.top_k.is_some()
    }

    /// The reward a run computes: the one asked for, or min when best-of-n needs one.
    pub fn reward(&self) -> Option<crate::select::reward::Reward> {
        self.reward
            .or(self.top_k.map(|_| crate::select::reward::Reward::Min))
    }

    pub fn validate(&self, keep: &Keep) -> Result<(), PipelineError> {
        if let Some(k) = self.top_k {
            crate::limits::at_least("top_k", k, 1)?;
        }
        if self.top_k.is_some() != self.per.is_some() {
            return Err(crate::limits::refuse(
                "top_k",
                "--top-k and --per go together (the K best of each group of --per)".into(),
            )
            .into());
        }
        if self.selects() && *keep != Keep::Rule {
            return Err(crate::limits::refuse(
                "keep_rate",
                "keeps the most uncertain rows; it does not combine with --where or --top-k, \
                 which keep the good ones"
                    .into(),
            )
            .into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct FilterJob {
    pub score: ScoreJob,
    pub keep: Keep,
    /// Which rows a keep rate takes from each batch.
    pub picks: crate::select::RatePicks,
    pub quality: Quality,
    /// `(i, n)`: this process handles units whose hash is i modulo n.
    pub shard: (u64, u64),
    pub write_skipped: bool,
    /// Report keep rates per value of this column.
    pub group_by: Option<String>,
    /// Throw away an earlier run's outputs in this folder instead of resuming it.
    pub restart: bool,
    pub label_format: crate::label::LabelFormat,
    /// Do these units only (a Ray task's share of the job); empty: every unit of the shard.
    pub units: Vec<UnitRef>,
}

impl FilterJob {
    pub fn new(score: ScoreJob, settings: &FilterSettings) -> Self {
        Self {
            score,
            keep: settings.keep.keep(),
            picks: settings.picks,
            quality: settings.quality.clone(),
            shard: (settings.shard.index, settings.shard.count),
            write_skipped: settings.write_skipped,
            group_by: settings.group_by.clone(),
            restart: settings.restart,
            label_format: settings.label_output.label_format,
            units: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), PipelineError> {
        self.score.validate()?;
        self.keep.validate()?;
        self.quality.validate(&self.keep)?;
        if self.picks == crate::select::RatePicks::Diverse && self.keep == Keep::Rule {
            return Err(crate::limits::refuse(
                "picks",
                "diverse chooses among the rows a keep rate takes; without --keep-rate the \
                 threshold rule keeps every uncertain row"
                    .into(),
            )
            .into());
        }
        let (i, n) = self.shard;
        if n == 0 || i >= n {
            return Err(crate::limits::refuse("shard", format!("{i}/{n} needs 0 <= i < n")).into());
        }
        Ok(())
    }
}

/// What a filter run's outputs depend on: stored as `run.json` when a run starts and compared on
/// every resume, so a rerun with another model, rule or column mapping never mixes its rows
/// with the earlier ones. Keys are the flags a user changes, so a refusal reads as they wrote it
/// (`--keep-rate: 0.25 -> 0.3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub format: u32,
    #[serde(rename = "model")]
    pub model_version: String,
    pub backbone: String,
    /// The uncertainty rule (absent) or a keep rate.
    #[serde(rename = "--keep-rate", with = "keep_rate")]
    pub keep: Keep,
    /// Other rows of each batch (absent: the most uncertain, as runs before the flag recorded).
    #[serde(
        rename = "--picks",
        default = "most_uncertain",
        skip_serializing_if = "is_most_uncertain"
    )]
    pub picks: crate::select::RatePicks,
    #[serde(rename = "--tau")]
    pub tau: f32,
    #[serde(rename = "--delta-pred")]
    pub delta_pred: f32,
    #[serde(rename = "--delta-std")]
    pub delta_std: f32,
    /// Keep rates apply per batch, so the batch size changes which rows are kept.
    #[serde(rename = "--batch-rows")]
    pub batch_rows: usize,
    #[serde(rename = "--problem-column")]
    pub problem_column: Option<String>,
    #[serde(rename = "--steps-column")]
    pub steps_column: Option<String>,
    #[serde(rename = "--write-skipped")]
    pub write_skipped: bool,
    #[serde(rename = "--head-probs")]
    pub head_probs: bool,
    #[serde(rename = "--group-by")]
    pub group_by: Option<String>,
    /// The arithmetic check changes `first_error`.
    #[serde(rename = "--check")]
    pub check: crate::score::check::CheckRule,
    /// Another split is other rows.
    #[serde(rename = "--split")]
    pub split: Option<String>,
    /// Another separator is other steps.
    #[serde(rename = "--step-separator")]
    pub step_separator: Option<String>,
    /// Other columns in the kept rows (absent: actprm's, as runs before the flag recorded).
    #[serde(
        rename = "--label-format",
        default,
        skip_serializing_if = "crate::label::LabelFormat::is_actprm"
    )]
    pub label_format: crate::label::LabelFormat,
    /// `--reward`, `--where`, `--top-k`, `--per`: the good rows kept instead of the uncertain.
    #[serde(flatten)]
    pub quality: Quality,
    /// Other files (absent: Parquet, as runs before the flag recorded).
    #[serde(rename = "--format", default)]
    pub data_format: crate::sink::DataFormat,
    /// A pipeline's `sql` transform after the filter: other rows and columns in the outputs
    /// (absent when there is none, as runs before it recorded).
    #[serde(rename = "sql", default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The input files as `name|bytes|footer hash` (what unit ids hash), sorted: a resume over
    /// another corpus would mix its units with these.
    #[serde(rename = "inputs (name|bytes|footer)")]
    pub inputs: Vec<String>,
}

/// `Keep` as `--keep-rate` takes it: a rate, or nothing for the uncertainty rule.
mod keep_rate {
    use super::Keep;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(keep: &Keep, s: S) -> Result<S::Ok, S::Error> {
        match keep {
            Keep::Rule => None::<f64>,
            Keep::Rate(r) => Some(*r),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Keep, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map_or(Keep::Rule, Keep::Rate))
    }
}

fn most_uncertain() -> crate::select::RatePicks {
    crate::select::RatePicks::MostUncertain
}

fn is_most_uncertain(picks: &crate::select::RatePicks) -> bool {
    *picks == crate::select::RatePicks::MostUncertain
}

/// 3: keys named as flags, with the inputs, split, separator and quality rules.
const RUN_FORMAT: u32 = 3;

impl RunSettings {
    /// The settings of `job` over its planned input `sources`.
    pub fn of(job: &FilterJob, sources: &[super::unit::UnitSource]) -> Result<Self, PipelineError> {
        let model = LoadedModel::open(job.score.model.as_deref())?;
        Ok(Self {
            format: RUN_FORMAT,
            model_version: model.version(),
            backbone: {
                let file = model.backbone_file(job.score.runtime.device);
                file.sha256
                    .unwrap_or_else(|| file.path.display().to_string())
            },
            keep: job.keep,
            picks: job.picks,
            tau: job.score.score.tau.unwrap_or(model.manifest.tau),
            delta_pred: job.score.score.rule.delta_pred,
            delta_std: job.score.score.rule.delta_std,
            batch_rows: job.score.batch_rows,
            problem_column: job.score.columns.problem.clone(),
            steps_column: job.score.columns.steps.clone(),
            write_skipped: job.write_skipped,
            head_probs: job.score.with_head_probs,
            group_by: job.group_by.clone(),
            check: job.score.score.check_rule(&model.manifest),
            split: job.score.columns.split.clone(),
            step_separator: job.score.columns.step_separator.clone(),
            label_format: job.label_format,
            quality: job.quality.clone(),
            data_format: job.score.format,
            query: job.score.query.clone(),
            inputs: {
                let mut keys: Vec<String> = sources.iter().map(|s| s.key.clone()).collect();
                keys.sort();
                keys
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_resume_names_settings_as_flags() {
        let before = RunSettings {
            format: RUN_FORMAT,
            model_version: "m@1".into(),
            backbone: "b".into(),
            keep: Keep::Rate(0.25),
            picks: crate::select::RatePicks::MostUncertain,
            tau: 0.5,
            delta_pred: 0.9,
            delta_std: 0.01,
            batch_rows: 64,
            problem_column: None,
            steps_column: None,
            write_skipped: false,
            head_probs: false,
            group_by: None,
            check: Default::default(),
            split: None,
            step_separator: None,
            label_format: Default::default(),
            quality: Quality::default(),
            data_format: Default::default(),
            query: None,
            inputs: vec!["a.parquet|10|x".into()],
        };
        // a run recorded before --label-format existed resumes with the default
        assert!(!serde_json::to_string(&before)
            .unwrap()
            .contains("label-format"));
        let dir = tempfile::tempdir().unwrap();
        crate::sink::commit::record(dir.path(), &before, "test").unwrap();
        let differences = |now: &RunSettings| match crate::sink::commit::recorded(dir.path(), now) {
            Ok(crate::sink::commit::Recorded::Changed(d)) => d,
            other => panic!("{other:?}"),
        };
        let now = RunSettings {
            keep: Keep::Rate(0.3),
            delta_std: 0.2,
            ..before.clone()
        };
        assert_eq!(
            differences(&now),
            vec!["--delta-std: 0.01 -> 0.2", "--keep-rate: 0.25 -> 0.3"]
        );
        let rule = RunSettings {
            keep: Keep::Rule,
            ..before.clone()
        };
        assert_eq!(differences(&rule), vec!["--keep-rate: 0.25 -> (none)"]);
        let trl = RunSettings {
            label_format: crate::label::LabelFormat::Trl,
            ..before
        };
        assert_eq!(differences(&trl), vec!["--label-format: (absent) -> trl"]);
    }
}
