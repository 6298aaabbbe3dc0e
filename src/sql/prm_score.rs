//! `prm_score(problem, steps)`: the scorer itself inside SQL, on whole Arrow batches, returning the
//! same per-step fields `actprm score` writes.

use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float32Builder, Int32Builder, ListBuilder,
    StringBuilder, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::functions::{check_arity, doc, list_of};
use super::SqlConfig;
use crate::model::LoadedModel;
use crate::score::TextScorer;

/// The scorer a session's `prm_score` runs, loaded on first use (a session that never scores
/// never opens the backbone).
static SCORE_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "Scores every step of each row with the session's model (`--model DIR`, else the embedded \
         default), batch by batch like `actprm score`. Returns a struct with the scored output's \
         columns: step_mean, step_std, first_error (joined with the arithmetic check under the \
         model's `check` rule), selected, select_reason, uncertainty, \
         model_version (thresholds from --tau/--delta-pred/--delta-std). NULL for rows `actprm score` \
         would reject: NULL or blank problem, NULL or empty steps, a NULL or blank step.",
        "prm_score(problem, steps)",
        "```sql\n> SELECT id, prm_score(problem, steps)['first_error'] FROM 'trajectories.parquet';\n> SELECT s['step_mean'] FROM (SELECT prm_score(problem, steps) AS s FROM t);\n```",
        &[("problem", "The problem text (a string)."), ("steps", "The steps, a list of strings.")],
    )
});

pub(super) struct PrmScore {
    signature: Signature,
    config: SqlConfig,
    state: Arc<Mutex<Option<TextScorer>>>,
}

impl std::fmt::Debug for PrmScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrmScore")
            .field("model", &self.config.model)
            .field("score", &self.config.score)
            .finish()
    }
}

// One scorer per session: two handles are the same function exactly when they share it.
impl PartialEq for PrmScore {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}
impl Eq for PrmScore {}
impl std::hash::Hash for PrmScore {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.state) as usize).hash(state);
    }
}

impl PrmScore {
    pub(super) fn new(config: &SqlConfig) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            config: config.clone(),
            state: Arc::new(Mutex::new(None)),
        }
    }

    fn load(&self) -> Result<TextScorer, String> {
        let model = LoadedModel::open(self.config.model.as_deref()).map_err(|e| e.to_string())?;
        TextScorer::open(&model, &self.config.runtime, self.config.score).map_err(|e| e.to_string())
    }
}

/// The fields of `prm_score`'s struct: the scored output's columns of the same names.
pub fn score_fields() -> Fields {
    Fields::from(vec![
        Field::new("step_mean", list_of(DataType::Float32), true),
        Field::new("step_std", list_of(DataType::Float32), true),
        Field::new("first_error", DataType::Int32, true),
        Field::new("selected", DataType::Boolean, true),
        Field::new("select_reason", DataType::Utf8, true),
        Field::new("uncertainty", DataType::Float32, true),
        Field::new("model_version", DataType::Utf8, true),
    ])
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

impl ScalarUDFImpl for PrmScore {
    fn name(&self) -> &str {
        "prm_score"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(self.name(), &["problem", "steps"], args)?;
        if !is_text(&args[0]) {
            return plan_err!(
                "prm_score: argument problem must be a string, got {}",
                args[0]
            );
        }
        let steps_ok = match &args[1] {
            DataType::Null => true,
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                is_text(f.data_type())
            }
            _ => false,
        };
        if !steps_ok {
            return plan_err!(
                "prm_score: argument steps must be a list of strings, got {}",
                args[1]
            );
        }
        Ok(vec![DataType::Utf8, list_of(DataType::Utf8)])
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(score_fields()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (problems, steps) = (arrays[0].as_string::<i32>(), arrays[1].as_list::<i32>());
        let step_text = steps.values().as_string::<i32>();
        // The rows `actprm score` would score; the others get NULL.
        let mut rows: Vec<(usize, &str, Vec<String>)> = Vec::new();
        for i in 0..args.number_rows {
            if problems.is_null(i) || problems.value(i).trim().is_empty() || steps.is_null(i) {
                continue;
            }
            let offsets = steps.value_offsets();
            let range = offsets[i] as usize..offsets[i + 1] as usize;
            if range.is_empty()
                || range
                    .clone()
                    .any(|j| step_text.is_null(j) || step_text.value(j).trim().is_empty())
            {
                continue;
            }
            rows.push((
                i,
                problems.value(i),
                range.map(|j| step_text.value(j).to_string()).collect(),
            ));
        }
        let mut scores = Vec::new();
        let mut version = String::new();
        if !rows.is_empty() {
            let mut guard = self.state.lock().map_err(|_| {
                datafusion::error::DataFusionError::Execution(
                    "prm_score: the scorer panicked earlier in this session".into(),
                )
            })?;
            if guard.is_none() {
                *guard = Some(self.load().map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "prm_score: loading the model: {e}"
                    ))
                })?);
            }
            let loaded = guard.as_mut().expect("loaded above");
            let inputs: Vec<(&str, &[String])> =
                rows.iter().map(|(_, p, s)| (*p, s.as_slice())).collect();
            scores = match loaded.score(&inputs) {
                Ok((s, _features)) => s,
                Err(e @ crate::score::texts::TextScoreError::Tokenizer(_)) => {
                    return exec_err!("prm_score: {e}")
                }
                Err(e) => return exec_err!("prm_score: scoring failed: {e}"),
            };
            version = loaded.scorer.heads.version().to_string();
        }
        let n = args.number_rows;
        let mut mean = ListBuilder::new(Float32Builder::new());
        let mut std = ListBuilder::new(Float32Builder::new());
        let mut first = Int32Builder::with_capacity(n);
        let mut selected = BooleanBuilder::with_capacity(n);
        let mut reason = StringBuilder::new();
        let mut uncertainty = Float32Builder::with_capacity(n);
        let mut versions = StringBuilder::new();
        let mut valid = vec![false; n];
        let mut scored = rows
            .iter()
            .map(|(i, _, _)| *i)
            .zip(scores.iter())
            .peekable();
        for (i, is_valid) in valid.iter_mut().enumerate() {
            match scored.next_if(|(row, _)| *row == i) {
                Some((_, s)) => {
                    *is_valid = true;
                    mean.append_value(s.mean.iter().map(|&v| Some(v)));
                    std.append_value(s.std.iter().map(|&v| Some(v)));
                    first.append_value(s.first_error);
                    selected.append_value(s.decision.selected);
                    reason.append_value(s.decision.reason());
                    uncertainty.append_value(s.decision.uncertainty);
                    versions.append_value(&version);
                }
                None => {
                    mean.append_null();
                    std.append_null();
                    first.append_null();
                    selected.append_null();
                    reason.append_null();
                    uncertainty.append_null();
                    versions.append_null();
                }
            }
        }
        let children: Vec<ArrayRef> = vec![
            Arc::new(mean.finish()),
            Arc::new(std.finish()),
            Arc::new(first.finish()),
            Arc::new(selected.finish()),
            Arc::new(reason.finish()),
            Arc::new(uncertainty.finish()),
            Arc::new(versions.finish()),
        ];
        let out = StructArray::try_new(score_fields(), children, Some(NullBuffer::from(valid)))?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
    fn documentation(&self) -> Option<&Documentation> {
        Some(&SCORE_DOC)
    }
}
