//! The pool-based experiment of ActPRM (ACTPRM.md, "Two settings"): stream a labelled pool through
//! the ensemble, let a strategy choose which trajectories to label, take a gradient step on those
//! (Algorithm 1), and track development F1 against the labels spent. Step features are computed
//! once (`actprm score --features`) and reused by every strategy and seed, so a full comparison
//! runs in minutes.

pub mod budget;
pub mod job;
pub mod plot;
pub mod run;

pub use crate::select::strategy::Strategy;
pub use budget::View;
pub use job::{run_experiment_files, ExperimentError, ExperimentRun, ExperimentSettings};
pub use run::{run_experiment, Curve, CurvePoint, ExperimentConfig, ExperimentReport};
