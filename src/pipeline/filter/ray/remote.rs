//! `filter --ray` into a remote output (`-o s3://...`): no node sees another's disk, so each task
//! commits its units in a folder of its own with the local protocol and uploads them, every data
//! file before the unit's commit record. The driver stages the run records (`run.json`,
//! `summary.json`, the card) as any remote output does, reads the commit records from the store,
//! checks that every file they list is there, and uploads its records last with the list of every
//! object of the output, the tasks' included.
//!
//! Which objects are this run's: those whose name carries the unit naming of one of its input
//! files (`STEM-HASH-`, the hash of the file's name, size and footer), so a task never replaces
//! an object the run did not write.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::{commit_record, run_given_units, FilterJob, FilterSummary, UnitSource};
use crate::pipeline::PipelineError;
use crate::sink::remote::RemoteOutput;

/// A Ray task's units: committed in a folder of this process's own, then uploaded. A unit whose
/// commit record is in the store already (a retry after its first attempt committed it) is not
/// done again.
pub fn run_task(job: &FilterJob, output: &RemoteOutput) -> Result<FilterSummary, PipelineError> {
    let objects = output.present()?;
    output.remove_dead_task_folders();
    let folder = TaskFolder(output.task_folder());
    let mut job = job.clone();
    job.score.output = folder.0.clone();
    let done = |id: &str| -> Result<bool, PipelineError> {
        Ok(objects.contains_key(&format!("units/{id}.json")))
    };
    let summary = run_given_units(&job, &job.units, &done)?;
    output.upload_units(&folder.0)?;
    Ok(summary)
}

/// A task's own folder, removed when the task ends however it ends: what it did not upload,
/// the retry does again.
struct TaskFolder(std::path::PathBuf);

impl Drop for TaskFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The driver's view of the store: which objects carry the naming of this run's inputs.
pub struct RunObjects<'a> {
    output: &'a RemoteOutput,
    /// [`UnitSource::unit_prefix`] of each input file.
    names: Vec<String>,
}

impl<'a> RunObjects<'a> {
    pub fn new(output: &'a RemoteOutput, sources: &[UnitSource]) -> Self {
        let names = sources.iter().map(UnitSource::unit_prefix).collect();
        Self { output, names }
    }

    fn ours(&self, key: &str) -> bool {
        let name = key.rsplit('/').next().unwrap_or(key);
        self.names.iter().any(|n| name.contains(n.as_str()))
    }

    /// Before any task: the objects of this run's inputs already in the store. A fresh run
    /// (no `run.json` staged on this machine) finds none, or refuses: they belong to a run of the
    /// same inputs whose records are elsewhere (`--restart` deletes them). A resumed one gets
    /// the commit records of the units its tasks uploaded into `out/units/`, to be checked
    /// against the listing.
    pub fn start(
        &self,
        out: &Path,
        resumed: bool,
        restart: bool,
    ) -> Result<BTreeMap<String, u64>, PipelineError> {
        let mut objects = self.objects()?;
        if !resumed && !objects.is_empty() {
            if !restart {
                return Err(PipelineError::Unfinished {
                    url: self.output.url().to_string(),
                    objects: objects.len(),
                    first: objects.keys().next().cloned().unwrap_or_default(),
                });
            }
            for key in objects.keys() {
                self.output.delete(key)?;
            }
            objects.clear();
        }
        // only now: a refused run's staging folder must not take another run's records
        self.fetch_records(out, &objects)?;
        Ok(objects)
    }

    /// After the tasks: every unit of the plan committed in the store, its records fetched into
    /// `out/units/` (where the summary reads them), and every object of this run adopted by the
    /// output's upload list.
    pub fn finish(&self, out: &Path, units: &[String]) -> Result<(), PipelineError> {
        let objects = self.objects()?;
        self.fetch_records(out, &objects)?;
        let committed = super::super::Committed::Listed(&objects);
        let missing: Vec<String> = units
            .iter()
            .filter_map(|id| match commit_record(out, id) {
                Ok(Some(record)) => committed.check(&record).err(),
                Ok(None) => Some(format!("unit {id}: no commit record in the store")),
                Err(e) => Some(e.to_string()),
            })
            .collect();
        if let Some(first) = missing.first() {
            return Err(PipelineError::RayUnitsFailed {
                failed: missing.len(),
                not_run: 0,
                units: units.len(),
                first: format!(
                    "{first} (its task reported success; the output is {})",
                    self.output.url()
                ),
            });
        }
        Ok(self.output.adopt(objects.keys())?)
    }

    /// The objects of this run's inputs in the store.
    fn objects(&self) -> Result<BTreeMap<String, u64>, PipelineError> {
        let mut objects = self.output.present()?;
        objects.retain(|key, _| self.ours(key));
        Ok(objects)
    }

    /// Copies the records under `units/` the staging folder lacks.
    fn fetch_records(
        &self,
        out: &Path,
        objects: &BTreeMap<String, u64>,
    ) -> Result<(), PipelineError> {
        for key in objects.keys() {
            let local = out.join(key);
            if key.starts_with("units/") && key.ends_with(".json") && !local.exists() {
                self.output.fetch(key, &local)?;
            }
        }
        Ok(())
    }
}
