//! A training batch: the steps of several trajectories flattened into one feature matrix, with
//! targets, a loss mask (steps after the first error are not labelled) and which trajectory
//! each step belongs to (for bagging).

use crate::formats::features::FeatureRow;
use crate::label::step_targets;

use super::TrainError;

#[derive(Debug, Clone, PartialEq)]
pub struct LabelledBatch {
    pub dim: usize,
    /// `[steps, D]`
    pub features: Vec<f32>,
    pub targets: Vec<f32>,
    pub mask: Vec<f32>,
    /// Trajectory index (0..trajectories) of each step.
    pub trajectory: Vec<i64>,
    pub trajectories: usize,
}

impl LabelledBatch {
    /// Builds a batch from labelled rows; unlabelled rows are skipped (they carry no loss).
    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = &'a FeatureRow>,
        dim: usize,
    ) -> Result<Self, TrainError> {
        let mut b = LabelledBatch {
            dim,
            features: vec![],
            targets: vec![],
            mask: vec![],
            trajectory: vec![],
            trajectories: 0,
        };
        for r in rows {
            let Some(label) = r.label else { continue };
            if r.features.len() != r.steps * dim {
                return Err(TrainError::Dimension {
                    got: r.features.len() / r.steps.max(1),
                    expected: dim,
                    where_: format!(" ({} row {})", r.source_file, r.source_row),
                });
            }
            if label < -1 || label >= r.steps as i32 {
                return Err(TrainError::Labels(format!(
                    "{} row {}: first-error label {label} is out of range for {} steps",
                    r.source_file, r.source_row, r.steps
                )));
            }
            let (t, m) = step_targets(label, r.steps);
            b.features.extend_from_slice(&r.features);
            b.targets.extend(t);
            b.mask.extend(m);
            b.trajectory
                .extend(std::iter::repeat_n(b.trajectories as i64, r.steps));
            b.trajectories += 1;
        }
        Ok(b)
    }

    pub fn steps(&self) -> usize {
        self.targets.len()
    }
}
