//! Every command returns a report instead of printing: JSON for machines (serde), a table for
//! people. The CLI's render module is the one place that chooses and prints.

pub trait Report: serde::Serialize {
    /// The report as the table printed on a terminal.
    fn table(&self) -> String;
}

/// Where a run's notices go (rows found unreadable, a refused heads refresh, a unit redone, a
/// development F1 line): stderr unless the caller collects them. The library never prints on
/// its own.
#[derive(Clone)]
pub struct Log(std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl Log {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }

    pub fn line(&self, text: &str) {
        (self.0)(text)
    }
}

impl Default for Log {
    fn default() -> Self {
        Self::new(|text| eprintln!("actprm: {text}"))
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}
