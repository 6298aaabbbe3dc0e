//! Value checks the types cannot express (ranges, required declarations), with the library's own
//! range rules (`limits`), so a flag and a file key are refused with one message.

use super::*;
use crate::limits::Problems;

/// Value checks the types cannot express (ranges, formats); each names the field it is about.
pub trait CheckValues {
    fn check_values(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

impl CheckValues for ModelDecl {}

impl CheckValues for JudgeDecl {
    fn check_values(&self) -> Vec<(String, String)> {
        settings_problems(|p| self.problems(p))
    }
}

impl CheckValues for ParquetSource {}
impl CheckValues for LabelledSource {}
impl CheckValues for SqlStage {}
impl CheckValues for LabelStage {}
impl CheckValues for PathSink {}
impl CheckValues for TableSink {}

/// The settings type's own range problems (the rules its flags get), located at their keys.
fn settings_problems(fill: impl FnOnce(&mut Problems)) -> Vec<(String, String)> {
    let mut problems = Problems::default();
    fill(&mut problems);
    problems.0.into_iter().map(|e| (e.key, e.message)).collect()
}

impl CheckValues for ScoreStage {
    fn check_values(&self) -> Vec<(String, String)> {
        settings_problems(|p| self.settings.problems(p))
    }
}

impl CheckValues for FilterStage {
    fn check_values(&self) -> Vec<(String, String)> {
        settings_problems(|p| self.settings.keep.problems(p))
    }
}

impl CheckValues for TrainStage {
    fn check_values(&self) -> Vec<(String, String)> {
        settings_problems(|p| self.settings.problems(p))
    }
}

impl CheckValues for FitStage {
    fn check_values(&self) -> Vec<(String, String)> {
        settings_problems(|p| self.settings.problems(p))
    }
}

impl CheckValues for FinetuneStage {
    fn check_values(&self) -> Vec<(String, String)> {
        settings_problems(|p| self.settings.problems(p))
    }
}

impl CheckValues for ExperimentStage {
    fn check_values(&self) -> Vec<(String, String)> {
        settings_problems(|p| self.settings.problems(p))
    }
}
