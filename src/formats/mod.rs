//! File formats actprm writes for itself (as opposed to the data sets it reads and writes under
//! `source/` and `sink/`).

pub mod features;
