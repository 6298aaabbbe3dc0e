//! Range checks of numeric settings, in the library so the CLI and pipeline files share them: a
//! zero batch size or a keep rate of 7 is refused before any work starts, with the setting's
//! name as both spell it.

use std::fmt::Display;

/// A setting out of its range. `name` shows both spellings: `batch_rows (--batch-rows)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name} {message}")]
pub struct SettingError {
    /// The pipeline-file key (`batch_rows`), where a file's problem is located.
    pub key: String,
    pub name: String,
    pub message: String,
}

/// `name` is the file spelling (`batch_rows`); the flag is derived (`--batch-rows`).
pub fn refuse(name: &str, message: String) -> SettingError {
    SettingError {
        key: name.to_string(),
        name: format!("{name} (--{})", name.replace('_', "-")),
        message,
    }
}

/// As [`refuse`], for a setting whose flag is not its key spelled with dashes (`url`:
/// `--judge-url`).
pub fn refuse_flag(key: &str, flag: &str, message: String) -> SettingError {
    SettingError {
        key: key.to_string(),
        name: format!("{key} (--{flag})"),
        message,
    }
}

/// Every range problem of one settings type: a pipeline file reports them all, located at
/// their keys; a command stops at the first (`first`). The settings types fill it
/// (`problems(&self, &mut Problems)`), so a flag and a file key are checked by one rule.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<SettingError>);

impl Problems {
    pub fn check(&mut self, result: Result<(), SettingError>) {
        if let Err(e) = result {
            self.0.push(e);
        }
    }

    /// The first problem, as a command reports it.
    pub fn first(self) -> Result<(), SettingError> {
        self.0.into_iter().next().map_or(Ok(()), Err)
    }
}

pub fn at_least<T: PartialOrd + Display>(name: &str, value: T, min: T) -> Result<(), SettingError> {
    if value >= min {
        Ok(())
    } else {
        Err(refuse(name, format!("must be at least {min}, got {value}")))
    }
}

/// A fraction in `[0, 1]` (`open_low`: in `(0, 1]`). Shown as written: an f32 widened to f64
/// would print 0.10000000149011612.
pub fn fraction<T: Into<f64> + Copy + Display>(
    name: &str,
    value: T,
    open_low: bool,
) -> Result<(), SettingError> {
    let v: f64 = value.into();
    let ok = v.is_finite() && v <= 1.0 && (v > 0.0 || (!open_low && v == 0.0));
    if ok {
        Ok(())
    } else {
        let range = if open_low { "(0, 1]" } else { "[0, 1]" };
        Err(refuse(name, format!("must be in {range}, got {value}")))
    }
}

/// A finite number above zero (learning rates, timeouts).
pub fn positive(name: &str, value: f64) -> Result<(), SettingError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(refuse(
            name,
            format!("must be a number above 0, got {value}"),
        ))
    }
}

/// A finite number at or above zero (loss weights).
pub fn non_negative(name: &str, value: f64) -> Result<(), SettingError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(refuse(name, format!("must be a number >= 0, got {value}")))
    }
}
