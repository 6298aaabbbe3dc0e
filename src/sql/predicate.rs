//! A SQL predicate over the rows of a batch (`filter --where`): DataFusion's expressions with the
//! PRM functions, evaluated in the stream, batch by batch, without a query plan.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use super::{SqlConfig, SqlError};

/// A predicate compiled once per schema (every batch of a run has the same one).
pub struct RowPredicate {
    text: String,
    ctx: SessionContext,
    compiled: Option<(SchemaRef, Arc<dyn PhysicalExpr>)>,
}

impl RowPredicate {
    pub fn new(text: &str, config: &SqlConfig) -> Self {
        Self {
            text: text.to_string(),
            ctx: super::session::session(config),
            compiled: None,
        }
    }

    /// Whether each row of `batch` satisfies the predicate (NULL counts as false, as in SQL's
    /// WHERE). An unknown column, a type error or a non-Boolean predicate is an error naming
    /// the predicate.
    pub fn evaluate(&mut self, batch: &RecordBatch) -> Result<Vec<bool>, SqlError> {
        let schema = batch.schema();
        if self.compiled.as_ref().is_none_or(|(s, _)| *s != schema) {
            self.compiled = Some((schema.clone(), self.compile(&schema)?));
        }
        let (_, expr) = self.compiled.as_ref().expect("compiled above");
        let value = expr
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| self.refuse(e.to_string()))?;
        let mask = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                self.refuse(format!(
                    "is of type {}, not a Boolean condition",
                    value.data_type()
                ))
            })?;
        Ok((0..mask.len())
            .map(|i| mask.is_valid(i) && mask.value(i))
            .collect())
    }

    fn compile(&self, schema: &SchemaRef) -> Result<Arc<dyn PhysicalExpr>, SqlError> {
        let df_schema =
            DFSchema::try_from(schema.as_ref().clone()).map_err(|e| self.refuse(e.to_string()))?;
        let expr = self
            .ctx
            .parse_sql_expr(&self.text, &df_schema)
            .map_err(|e| self.refuse(e.to_string()))?;
        self.ctx
            .create_physical_expr(expr, &df_schema)
            .map_err(|e| self.refuse(e.to_string()))
    }

    fn refuse(&self, message: String) -> SqlError {
        SqlError::Usage(format!("--where {:?}: {message}", self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, ListArray};
    use arrow::datatypes::Float32Type;

    fn batch() -> RecordBatch {
        let means = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(0.9), Some(0.8)]),
            Some(vec![Some(0.9), Some(0.2)]),
            None,
        ]);
        RecordBatch::try_from_iter(vec![
            (
                "first_error",
                Arc::new(Int32Array::from(vec![-1, 1, -1])) as _,
            ),
            ("step_mean", Arc::new(means) as _),
        ])
        .unwrap()
    }

    #[test]
    fn rows_are_kept_by_the_predicate_with_the_prm_functions() {
        let mut p = RowPredicate::new(
            "first_error = -1 AND prm_list_min(step_mean) > 0.6",
            &SqlConfig::default(),
        );
        // the third row's NULL list makes the condition NULL: not kept
        assert_eq!(p.evaluate(&batch()).unwrap(), vec![true, false, false]);
    }

    #[test]
    fn a_bad_predicate_names_itself() {
        for (text, says) in [("nope > 1", "nope"), ("first_error + 1", "not a Boolean")] {
            let err = RowPredicate::new(text, &SqlConfig::default())
                .evaluate(&batch())
                .unwrap_err()
                .to_string();
            assert!(err.contains(text) && err.contains(says), "{err}");
        }
    }
}
