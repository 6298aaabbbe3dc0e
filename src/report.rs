//! Every command returns a report instead of printing: JSON for machines (serde), a table for
//! people. The CLI's render module is the one place that chooses and prints.

pub trait Report: serde::Serialize {
    /// The report as the table printed on a terminal.
    fn table(&self) -> String;
}
