//! The stages runs are assembled from, in data-flow order: read -> tokenise -> score, and judge
//! (a `label` run's middle). Sinks live with the commands that own their output layout.

pub mod judge;
pub mod read;
pub mod score;
pub mod tokenise;

pub use judge::{JudgeRows, Judged, JudgedBatch};
pub use read::ReadFiles;
pub use score::{ScoreSteps, Scored, ScoredBatch};
pub use tokenise::{Tokenise, Tokenised};
