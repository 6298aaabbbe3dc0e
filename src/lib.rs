//! actprm: Process Reward Models trained by active learning, as one streaming dataflow:
//! source -> tokenise -> score -> select -> label -> train -> sink.

pub mod eval;
pub mod experiment;
pub mod failpoint;
pub mod formats;
pub mod label;
pub mod limits;
pub mod location;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod runtime;
pub mod score;
pub mod select;
pub mod settings;
pub mod sink;
pub mod source;
pub mod sql;
pub mod tokenise;
pub mod train;
