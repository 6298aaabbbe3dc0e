//! `actprm filter-verify`: do the shard outputs cover every input unit exactly once, with every
//! file present and whole?

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::super::PipelineError;
use super::*;

/// Checks that shard outputs together cover every unit of the inputs exactly once, with every
/// row accounted for. Returns the problems found (empty = complete).
pub fn verify(
    inputs: &[String],
    columns: &crate::source::ColumnMapping,
    outputs: &[PathBuf],
) -> Result<(FilterSummary, Vec<String>), PipelineError> {
    let (planned, sources) = plan_sources(inputs, columns)?;
    let mut seen: BTreeMap<String, Vec<(PathBuf, UnitStats)>> = BTreeMap::new();
    let mut all = Vec::new();
    for out in outputs {
        for u in committed_units(out)? {
            seen.entry(u.unit.clone())
                .or_default()
                .push((out.clone(), u.clone()));
            all.push(u);
        }
    }
    let mut problems = Vec::new();
    for (f, source) in planned.iter().zip(&sources) {
        let expected: Vec<(String, u64)> = if f.columns.is_err() {
            vec![(source.unit_id(None), 0)]
        } else {
            (0..f.row_groups)
                .map(|g| (source.unit_id(Some(g)), f.group_rows[g]))
                .collect()
        };
        for (unit, rows) in expected {
            match seen.remove(&unit) {
                None => problems.push(format!("missing: {} ({unit})", f.path.display())),
                Some(v) if v.len() > 1 => problems.push(format!(
                    "{unit} committed {} times: {:?}",
                    v.len(),
                    v.iter()
                        .map(|x| x.0.display().to_string())
                        .collect::<Vec<_>>()
                )),
                Some(v) if v[0].1.rows_in != rows => problems.push(format!(
                    "{unit}: {} rows accounted for, the file has {rows}",
                    v[0].1.rows_in
                )),
                Some(v) => {
                    let (out, stats) = &v[0];
                    if let Err(problem) = unit::check_committed(out, stats) {
                        problems.push(problem);
                    }
                }
            }
        }
    }
    for unit in seen.keys() {
        problems.push(format!("{unit} is not a unit of these inputs"));
    }
    Ok((summarise(&all), problems))
}
