//! PRM functions registered in every session. The selection functions call the pipeline's own
//! `select::first_error` and `select::decide`, so SQL and `actprm score` can never disagree on a
//! row; `prm_score` runs the scorer itself on whole Arrow batches.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, Int32Array, ListArray,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Int32Type};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use super::prm_score::PrmScore;
use super::SqlConfig;
use crate::score::check::earliest_error;
use crate::select::{decide, first_error, SelectionRule};

const SECTION: DocSection = DocSection {
    include: true,
    label: "PRM functions",
    description: Some("Process Reward Model helpers registered by actprm"),
};

/// Registers every PRM function in `ctx`.
pub fn register(ctx: &SessionContext, config: &SqlConfig) {
    for udf in udfs(config) {
        ctx.register_udf(udf);
    }
}

/// The PRM functions, for listing in the shell and the docs.
pub fn udfs(config: &SqlConfig) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(FirstError::new()),
        ScalarUDF::from(Decide::new("prm_is_uncertain", DecideOutput::Selected)),
        ScalarUDF::from(Decide::new("prm_uncertainty", DecideOutput::Uncertainty)),
        ScalarUDF::from(Decide::new("prm_select_reason", DecideOutput::Reason)),
        ScalarUDF::from(ListStat::new("prm_list_min", Stat::Min)),
        ScalarUDF::from(ListStat::new("prm_list_argmin", Stat::Argmin)),
        ScalarUDF::from(ListStat::new("prm_list_mean", Stat::Mean)),
        ScalarUDF::from(PrmScore::new(config)),
    ]
}

pub(super) fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// Coerces a per-step argument (any list of numbers, or NULL) to `List<item>`.
fn coerce_list(
    function: &str,
    argument: &str,
    given: &DataType,
    item: DataType,
) -> Result<DataType> {
    match given {
        DataType::Null => Ok(list_of(item)),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if f.data_type().is_numeric() || f.data_type() == &DataType::Null =>
        {
            Ok(list_of(item))
        }
        other => plan_err!("{function}: argument {argument} must be a list of numbers (like step_mean), got {other}"),
    }
}

/// Coerces a threshold argument (any number, or NULL) to `Float32`, the pipeline's precision.
fn coerce_number(function: &str, argument: &str, given: &DataType) -> Result<DataType> {
    if given.is_numeric() || given == &DataType::Null {
        Ok(DataType::Float32)
    } else {
        plan_err!("{function}: argument {argument} must be a number, got {given}")
    }
}

pub(super) fn check_arity(function: &str, names: &[&str], given: &[DataType]) -> Result<()> {
    if given.len() != names.len() {
        return plan_err!(
            "{function} takes {} arguments ({}), got {}",
            names.len(),
            names.join(", "),
            given.len()
        );
    }
    Ok(())
}

/// Row `i` of a `List<Float32>` as a slice, or `None` when the list or any element is null
/// (a missing step score leaves the answer unknown).
fn f32_row(list: &ListArray, i: usize) -> Option<&[f32]> {
    if list.is_null(i) {
        return None;
    }
    let offsets = list.value_offsets();
    let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
    let values = list.values().as_primitive::<Float32Type>();
    if values
        .nulls()
        .is_some_and(|n| (start..end).any(|j| n.is_null(j)))
    {
        return None;
    }
    Some(&values.values()[start..end])
}

fn f32_arg(array: &Float32Array, i: usize) -> Option<f32> {
    array.is_valid(i).then(|| array.value(i))
}

pub(super) fn doc(
    description: &str,
    syntax: &str,
    example: &str,
    arguments: &[(&str, &str)],
) -> Documentation {
    let mut builder =
        Documentation::builder(SECTION, description, syntax).with_sql_example(example);
    for (name, text) in arguments {
        builder = builder.with_argument(*name, *text);
    }
    builder.build()
}

// ---------------------------------------------------------------------------------------------
// prm_first_error

#[derive(Debug, PartialEq, Eq, Hash)]
struct FirstError {
    signature: Signature,
}

impl FirstError {
    fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

static FIRST_ERROR_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "0-based index of the first step whose score is below `tau`, or -1 when every step passes \
         (ProcessBench's predicted error; the same code as `actprm score`). With a third argument, \
         the arithmetic check's first false step (`check_first_false`), the earlier of the two, as \
         `first_error` under `check: min`. NULL when the list, tau, the check or any step score is \
         NULL; -1 for an empty list.",
        "prm_first_error(step_scores, tau[, check_first_false])",
        "```sql\n> SELECT prm_first_error([0.9, 0.6, 0.3], 0.5);\n2\n> SELECT prm_first_error([0.9, 0.6, 0.3], 0.5, 1);\n1\n> SELECT prm_first_error(step_mean, 0.7, check_first_false) FROM 'scored/part-00000.parquet';\n```",
        &[
            ("step_scores", "List of per-step probabilities, e.g. `step_mean`."),
            ("tau", "Threshold; a step with score < tau is an error."),
            ("check_first_false", "Optional: the first step stating a false equality, -1 for none (the `check_first_false` column)."),
        ],
    )
});

impl ScalarUDFImpl for FirstError {
    fn name(&self) -> &str {
        "prm_first_error"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let names = ["step_scores", "tau", "check_first_false"];
        // the check is optional: two arguments are the heads alone
        check_arity(self.name(), &names[..args.len().clamp(2, 3)], args)?;
        let mut types = vec![
            coerce_list(self.name(), "step_scores", &args[0], DataType::Float32)?,
            coerce_number(self.name(), "tau", &args[1])?,
        ];
        if let Some(check) = args.get(2) {
            if !(check.is_integer() || check == &DataType::Null) {
                return plan_err!(
                    "prm_first_error: argument check_first_false must be an integer step index, got {check}"
                );
            }
            types.push(DataType::Int32);
        }
        Ok(types)
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (scores, tau) = (
            arrays[0].as_list::<i32>(),
            arrays[1].as_primitive::<Float32Type>(),
        );
        let checks = arrays.get(2).map(|c| c.as_primitive::<Int32Type>());
        let out: Int32Array = (0..args.number_rows)
            .map(|i| {
                let model = first_error(f32_row(scores, i)?, f32_arg(tau, i)?);
                let Some(checks) = checks else {
                    return Some(model);
                };
                let check = checks.is_valid(i).then(|| checks.value(i))?;
                Some(earliest_error(model, usize::try_from(check).ok()))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
    fn documentation(&self) -> Option<&Documentation> {
        Some(&FIRST_ERROR_DOC)
    }
}

// ---------------------------------------------------------------------------------------------
// prm_is_uncertain / prm_uncertainty / prm_select_reason: select::decide

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DecideOutput {
    Selected,
    Uncertainty,
    Reason,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Decide {
    name: &'static str,
    output: DecideOutput,
    signature: Signature,
}

impl Decide {
    fn new(name: &'static str, output: DecideOutput) -> Self {
        Self {
            name,
            output,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

const DECIDE_ARGS: [(&str, &str); 4] = [
    (
        "step_mean",
        "List of per-step means over the heads (`step_mean`).",
    ),
    (
        "step_std",
        "List of per-step standard deviations over the heads (`step_std`), same length.",
    ),
    (
        "delta_pred",
        "A step is confident only if max(mean, 1 - mean) >= delta_pred (pipeline default 0.9).",
    ),
    (
        "delta_std",
        "... and its std <= delta_std (pipeline default 0.01).",
    ),
];

static SELECTED_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "ActPRM's selection rule, the same code as `actprm score`'s `selected` column: true when some \
         step up to and including the first step with mean < 0.5 is not confident. NULL when any \
         argument or step value is NULL; false for empty lists; an error when the two lists differ in length.",
        "prm_is_uncertain(step_mean, step_std, delta_pred, delta_std)",
        "```sql\n> SELECT prm_is_uncertain([0.97, 0.05, 0.5], [0.001, 0.002, 0.3], 0.9, 0.01);\nfalse\n> SELECT count(*) FROM 'scored/*.parquet' WHERE prm_is_uncertain(step_mean, step_std, 0.8, 0.02);\n```",
        &DECIDE_ARGS,
    )
});

static UNCERTAINTY_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "How far the least confident counted step is past the thresholds (the `uncertainty` column): \
         the larger of (1 - max(mean, 1 - mean)) / (1 - delta_pred) and std / delta_std. The rule \
         selects exactly when this exceeds 1, so ORDER BY it to keep the top x% most uncertain.",
        "prm_uncertainty(step_mean, step_std, delta_pred, delta_std)",
        "```sql\n> SELECT prm_uncertainty([0.95, 0.99], [0.05, 0.0], 0.9, 0.01);\n5.0\n```",
        &DECIDE_ARGS,
    )
});

static REASON_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "Why the rule selects a trajectory (the `select_reason` column): aleatoric, epistemic, \
         aleatoric+epistemic, or confident.",
        "prm_select_reason(step_mean, step_std, delta_pred, delta_std)",
        "```sql\n> SELECT prm_select_reason([0.7], [0.2], 0.9, 0.01);\naleatoric+epistemic\n```",
        &DECIDE_ARGS,
    )
});

impl ScalarUDFImpl for Decide {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let names: Vec<&str> = DECIDE_ARGS.iter().map(|(n, _)| *n).collect();
        check_arity(self.name, &names, args)?;
        Ok(vec![
            coerce_list(self.name, "step_mean", &args[0], DataType::Float32)?,
            coerce_list(self.name, "step_std", &args[1], DataType::Float32)?,
            coerce_number(self.name, "delta_pred", &args[2])?,
            coerce_number(self.name, "delta_std", &args[3])?,
        ])
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            DecideOutput::Selected => DataType::Boolean,
            DecideOutput::Uncertainty => DataType::Float32,
            DecideOutput::Reason => DataType::Utf8,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (mean, std) = (arrays[0].as_list::<i32>(), arrays[1].as_list::<i32>());
        let (pred, sd) = (
            arrays[2].as_primitive::<Float32Type>(),
            arrays[3].as_primitive::<Float32Type>(),
        );
        let mut decisions = Vec::with_capacity(args.number_rows);
        for i in 0..args.number_rows {
            let row = || -> Option<(&[f32], &[f32], SelectionRule)> {
                Some((
                    f32_row(mean, i)?,
                    f32_row(std, i)?,
                    SelectionRule {
                        delta_pred: f32_arg(pred, i)?,
                        delta_std: f32_arg(sd, i)?,
                    },
                ))
            };
            decisions.push(match row() {
                None => None,
                Some((m, s, _)) if m.len() != s.len() => {
                    return exec_err!(
                        "{}: row {i} has {} step_mean values but {} step_std values",
                        self.name,
                        m.len(),
                        s.len()
                    );
                }
                Some((m, s, rule)) => Some(decide(m, s, rule)),
            });
        }
        let out: ArrayRef = match self.output {
            DecideOutput::Selected => Arc::new(
                decisions
                    .iter()
                    .map(|d| d.map(|d| d.selected))
                    .collect::<BooleanArray>(),
            ),
            DecideOutput::Uncertainty => Arc::new(
                decisions
                    .iter()
                    .map(|d| d.map(|d| d.uncertainty))
                    .collect::<Float32Array>(),
            ),
            DecideOutput::Reason => {
                let mut b = StringBuilder::new();
                decisions
                    .iter()
                    .for_each(|d| b.append_option(d.map(|d| d.reason())));
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.output {
            DecideOutput::Selected => &SELECTED_DOC,
            DecideOutput::Uncertainty => &UNCERTAINTY_DOC,
            DecideOutput::Reason => &REASON_DOC,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// prm_list_min / prm_list_argmin / prm_list_mean

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stat {
    Min,
    Argmin,
    Mean,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ListStat {
    name: &'static str,
    stat: Stat,
    signature: Signature,
}

impl ListStat {
    fn new(name: &'static str, stat: Stat) -> Self {
        Self {
            name,
            stat,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

const LIST_ARG: [(&str, &str); 1] = [(
    "values",
    "A list of numbers, e.g. `step_mean` or `step_std`.",
)];

static MIN_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "Smallest value of a per-step list (the weakest step), as a double. NULL elements and NaN are \
         skipped; NULL for a NULL, empty or all-NULL list.",
        "prm_list_min(values)",
        "```sql\n> SELECT prm_list_min([0.9, 0.2, 0.7]);\n0.2\n```",
        &LIST_ARG,
    )
});

static ARGMIN_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "0-based position of the smallest value of a per-step list (the first one on ties). NULL \
         elements and NaN are skipped; NULL for a NULL, empty or all-NULL list.",
        "prm_list_argmin(values)",
        "```sql\n> SELECT prm_list_argmin([0.9, 0.2, 0.7, 0.2]);\n1\n```",
        &LIST_ARG,
    )
});

static MEAN_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    doc(
        "Mean of a per-step list, as a double. NULL elements are skipped; NULL for a NULL, empty or \
         all-NULL list.",
        "prm_list_mean(values)",
        "```sql\n> SELECT prm_list_mean([1.0, 0.5, NULL]);\n0.75\n```",
        &LIST_ARG,
    )
});

impl ScalarUDFImpl for ListStat {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(self.name, &["values"], args)?;
        Ok(vec![coerce_list(
            self.name,
            "values",
            &args[0],
            DataType::Float64,
        )?])
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.stat {
            Stat::Argmin => DataType::Int32,
            Stat::Min | Stat::Mean => DataType::Float64,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let list = arrays[0].as_list::<i32>();
        let values = list.values().as_primitive::<Float64Type>();
        let offsets = list.value_offsets();
        // (position within the row, value) of every non-null element of row i.
        let elements = move |i: usize| {
            let start = offsets[i] as usize;
            (start..offsets[i + 1] as usize)
                .filter(move |&j| values.is_valid(j))
                .map(move |j| (j - start, values.value(j)))
        };
        // The first smallest non-NaN element of row i.
        let smallest = move |i: usize| -> Option<(usize, f64)> {
            if list.is_null(i) {
                return None;
            }
            elements(i)
                .filter(|(_, v)| !v.is_nan())
                .fold(None, |best, (j, v)| match best {
                    Some((_, b)) if b <= v => best,
                    _ => Some((j, v)),
                })
        };
        let rows = 0..list.len();
        let out: ArrayRef = match self.stat {
            Stat::Min => Arc::new(
                rows.map(|i| smallest(i).map(|(_, v)| v))
                    .collect::<Float64Array>(),
            ),
            Stat::Argmin => Arc::new(
                rows.map(|i| smallest(i).map(|(j, _)| j as i32))
                    .collect::<Int32Array>(),
            ),
            Stat::Mean => Arc::new(
                rows.map(|i| {
                    if list.is_null(i) {
                        return None;
                    }
                    let (n, sum) =
                        elements(i).fold((0usize, 0f64), |(n, s), (_, v)| (n + 1, s + v));
                    (n > 0).then(|| sum / n as f64)
                })
                .collect::<Float64Array>(),
            ),
        };
        Ok(ColumnarValue::Array(out))
    }
    fn documentation(&self) -> Option<&Documentation> {
        Some(match self.stat {
            Stat::Min => &MIN_DOC,
            Stat::Argmin => &ARGMIN_DOC,
            Stat::Mean => &MEAN_DOC,
        })
    }
}

// ---------------------------------------------------------------------------------------------
