//! An `sql` transform after `score` or `filter` in a pipeline file: one query over the rows, run
//! batch by batch as they stream to the sinks. Only row-wise queries can run so (each output row from
//! one input row: SELECT of expressions, WHERE); an aggregate, ORDER BY, LIMIT, window, join or
//! DISTINCT needs every row at once and is refused by name before its first batch is written.

use arrow::array::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use super::{SqlConfig, SqlError};

/// The name the query reads its rows by.
const INPUT: &str = "input";

pub struct RowQuery {
    text: String,
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
}

impl RowQuery {
    pub fn new(text: &str, config: &SqlConfig) -> Result<Self, SqlError> {
        let runtime = crate::runtime::start("actprm-sql", Some(1))
            .map_err(|e| SqlError::Usage(format!("starting the SQL runtime: {e}")))?;
        Ok(Self {
            text: text.to_string(),
            ctx: super::session::session(config),
            runtime,
        })
    }

    /// The query's rows for `batch` (registered as table `input`).
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, SqlError> {
        self.runtime.block_on(async {
            let refuse = |e: &dyn std::fmt::Display| self.refuse(e.to_string());
            let _ = self.ctx.deregister_table(INPUT);
            self.ctx
                .register_batch(INPUT, batch.clone())
                .map_err(|e| refuse(&e))?;
            // planned first, so a statement (CREATE, COPY) is refused, never executed
            let plan = self
                .ctx
                .state()
                .create_logical_plan(&self.text)
                .await
                .map_err(|e| refuse(&e))?;
            row_wise(&plan).map_err(|what| refuse(&what))?;
            let frame = self
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| refuse(&e))?;
            let schema = frame.schema().as_arrow().clone();
            let batches = frame.collect().await.map_err(|e| refuse(&e))?;
            arrow::compute::concat_batches(&std::sync::Arc::new(schema), &batches)
                .map_err(|e| refuse(&e))
        })
    }

    fn refuse(&self, message: String) -> SqlError {
        SqlError::Usage(format!(
            "sql transform after score {:?}: {message}",
            self.text
        ))
    }
}

/// `Ok` when every node of `plan` maps rows one by one over table `input`; else what it does.
fn row_wise(plan: &LogicalPlan) -> Result<(), String> {
    if matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
    ) {
        return Err("it is a statement; a transform runs one SELECT over table `input`".into());
    }
    let mut refused = None;
    let _ = plan.apply(|node| {
        let why = match node {
            LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
                None
            }
            LogicalPlan::TableScan(scan) if scan.table_name.table() == INPUT => None,
            LogicalPlan::TableScan(scan) => Some(format!(
                "reads {}; after score or filter the query reads its rows as table `input` only",
                scan.table_name
            )),
            LogicalPlan::Aggregate(_) => Some("aggregates".to_string()),
            LogicalPlan::Sort(_) => Some("sorts (ORDER BY)".to_string()),
            LogicalPlan::Limit(_) => Some("limits (LIMIT)".to_string()),
            LogicalPlan::Window(_) => Some("uses a window function".to_string()),
            LogicalPlan::Join(_) => Some("joins".to_string()),
            LogicalPlan::Distinct(_) => Some("is DISTINCT".to_string()),
            other => Some(format!("is {}", other.display())),
        };
        Ok(match why {
            Some(why) => {
                refused = Some(why);
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    });
    match refused {
        None => Ok(()),
        Some(why) => Err(format!(
            "it {why}, which needs every row at once; after score or filter a query runs on each \
             batch as it streams (SELECT expressions ... FROM input WHERE ...): run the query with \
             `actprm sql` over the sink's folder instead"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float32Array, Int32Array, StringArray};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
            (
                "first_error",
                Arc::new(Int32Array::from(vec![-1, 2, -1])) as _,
            ),
            (
                "reward",
                Arc::new(Float32Array::from(vec![0.9, 0.4, 0.7])) as _,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn a_row_wise_query_maps_each_batch() {
        let q = RowQuery::new(
            "SELECT id, reward * 2 AS doubled FROM input WHERE first_error = -1",
            &SqlConfig::default(),
        )
        .unwrap();
        let out = q.apply(&batch()).unwrap();
        assert_eq!(out.num_rows(), 2);
        let ids = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "c"));
        // the next batch is its own table
        let again = q.apply(&batch().slice(1, 1)).unwrap();
        assert_eq!(again.num_rows(), 0);
        assert_eq!(again.schema(), out.schema());
    }

    #[test]
    fn queries_that_need_every_row_are_refused_by_name() {
        for (text, says) in [
            ("SELECT count(*) FROM input", "aggregates"),
            ("SELECT id FROM input ORDER BY reward", "ORDER BY"),
            ("SELECT id FROM input LIMIT 1", "LIMIT"),
            ("SELECT DISTINCT id FROM input", "DISTINCT"),
            ("CREATE TABLE t AS SELECT 1", "is a statement"),
        ] {
            let q = RowQuery::new(text, &SqlConfig::default()).unwrap();
            let err = q.apply(&batch()).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
