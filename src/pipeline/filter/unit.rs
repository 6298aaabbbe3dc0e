//! What a filter unit is (one row group of one input file), how it is named, and whether a
//! committed unit's files are really there: on disk with the rows its record promises, or in
//! the object store a Ray run's tasks upload them to.
//!
//! A unit's id comes from the file's name relative to its input root, its size and a hash of its
//! Parquet footer: `-i ./corpus` after `-i corpus`, or shards that mount the corpus at different
//! paths, name the same units; a file replaced by another of the same name does not.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::UnitStats;
use crate::source::discover::InputFile;

/// FNV-1a: a hash that never changes between versions or machines (shard assignment relies on it).
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An input file as the filter names its units.
#[derive(Debug, Clone)]
pub struct UnitSource {
    pub path: PathBuf,
    /// Name relative to the input root.
    pub name: String,
    /// `name|size|footer hash`: what the unit ids hash.
    pub key: String,
}

impl UnitSource {
    pub fn new(file: &InputFile) -> Self {
        let size = std::fs::metadata(&file.path).map_or(0, |m| m.len());
        let footer = footer_hash(&file.path).unwrap_or_else(|| "unreadable".into());
        Self {
            path: file.path.clone(),
            name: file.name.clone(),
            key: format!("{}|{size}|{footer}", file.name),
        }
    }

    /// The unit id of row group `group` (`None`: the whole file, when its footer is unreadable).
    pub fn unit_id(&self, group: Option<usize>) -> String {
        let prefix = self.unit_prefix();
        match group {
            Some(g) => format!("{prefix}rg{g:05}"),
            None => format!("{prefix}file"),
        }
    }

    /// `STEM-HASH-`: what every unit id of this file, and so every file its units write, starts
    /// with.
    pub fn unit_prefix(&self) -> String {
        let stem = Path::new(&self.name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("input");
        let stem: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let hash = stable_hash(&self.key);
        format!("{stem}-{hash:016x}-")
    }

    pub fn in_shard(&self, group: usize, (i, n): (u64, u64)) -> bool {
        stable_hash(&format!("{}#{group}", self.key)) % n.max(1) == i
    }
}

/// sha256 of the Parquet footer (metadata + length + magic), first 16 hex digits.
fn footer_hash(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    if size < 12 {
        return None;
    }
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8)).ok()?;
    f.read_exact(&mut tail).ok()?;
    if &tail[4..] != b"PAR1" {
        return None;
    }
    let len = u64::from(u32::from_le_bytes(tail[..4].try_into().ok()?)) + 8;
    if len > size - 4 {
        return None;
    }
    let mut footer = vec![0u8; len as usize];
    f.seek(SeekFrom::End(-(len as i64))).ok()?;
    f.read_exact(&mut footer).ok()?;
    let digest = Sha256::digest(&footer);
    Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// Where a run's committed units are checked.
pub enum Committed<'a> {
    /// The output folder: every file a record lists is read for its rows.
    Folder(&'a Path),
    /// A remote output's objects (key relative to its prefix, size), as listed: a record is
    /// uploaded after the unit's data files, and an object is stored whole or not at all, so a
    /// listed record whose files are listed is a whole commit.
    Listed(&'a BTreeMap<String, u64>),
}

impl Committed<'_> {
    pub fn check(&self, unit: &UnitStats) -> Result<(), String> {
        match self {
            Committed::Folder(out) => check_committed(out, unit),
            Committed::Listed(objects) => match unit
                .outputs
                .files()
                .find(|file| !objects.contains_key(*file))
            {
                Some(file) => Err(format!(
                    "unit {}: {file} is not in the output, its commit record lists it",
                    unit.unit
                )),
                None => Ok(()),
            },
        }
    }
}

/// Checks that every file a commit record lists exists with the rows it promises.
pub fn check_committed(out: &Path, unit: &UnitStats) -> Result<(), String> {
    unit.outputs
        .check(out)
        .map_err(|e| format!("unit {}: {e}", unit.unit))
}
