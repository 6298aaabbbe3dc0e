//! Labelling: turning a selected trajectory into step labels. Pool mode reveals labels already
//! in the data (simulating the judge); every label form reduces to the first-error index.

pub mod pool;

pub use pool::{first_error_labels, step_targets, LabelColumn};
