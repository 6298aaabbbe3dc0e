//! How a settings type is declared: once per field (doc, type, default), from which the struct,
//! its `Default`, its flags (clap) and its pipeline-file keys (serde, JSON Schema) all come, so a
//! default cannot differ between a command and the file that spells it out.

use std::fmt;
use std::str::FromStr;

/// Declares a settings struct. A field written `name: Type = DEFAULT` gets `DEFAULT` as its
/// `Default` value and as its flag's default (`default_value_t`); a field without `= DEFAULT`
/// takes `Type::default()` and no flag default (an optional value, a switch, an empty list, a
/// flattened group). Derives and attributes are the caller's: the struct needs
/// `#[serde(default)]` for its file keys to default the same way.
///
/// ```
/// actprm::settings! {
///     #[derive(Debug, clap::Args)]
///     pub struct Example {
///         /// Rows per batch.
///         #[arg(long)]
///         pub batch_rows: usize = 64,
///         #[arg(long)]
///         pub seed: Option<u64>,
///     }
/// }
/// assert_eq!(Example::default().batch_rows, 64);
/// ```
#[macro_export]
macro_rules! settings {
    (
        $(#[$struct_meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field_vis:vis $field:ident : $ty:ty $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$struct_meta])*
        $vis struct $name {
            $(
                $(#[$field_meta])*
                $(#[arg(default_value_t = $default)])?
                $field_vis $field: $ty,
            )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $crate::settings!(@default $($default)?),)*
                }
            }
        }
    };
    (@default $default:expr) => { $default };
    (@default) => { ::core::default::Default::default() };
}

/// A list given as one comma-separated flag value (`--seeds 0,1,2`) or a file's YAML list, so a
/// list setting has one default for both (its `Display` is the flag's default).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct List<T>(pub Vec<T>);

impl<T> List<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> From<Vec<T>> for List<T> {
    fn from(items: Vec<T>) -> Self {
        Self(items)
    }
}

impl<T: fmt::Display> fmt::Display for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

impl<T: FromStr> FromStr for List<T>
where
    T::Err: fmt::Display,
{
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| item.parse().map_err(|e: T::Err| e.to_string()))
            .collect::<Result<Vec<T>, String>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::List;

    crate::settings! {
        #[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        struct Sample {
            /// Valued: one default for the struct, the flag and the key.
            #[arg(long)]
            rate: f64 = 2e-3,
            #[arg(long)]
            seeds: List<u64> = List(vec![0, 1, 2]),
            /// Unvalued: the type's default, no flag default.
            #[arg(long)]
            limit: Option<u64>,
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sample: Sample,
    }

    fn parse(args: &[&str]) -> Sample {
        use clap::Parser;
        let mut all = vec!["cli"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().sample
    }

    #[test]
    fn one_default_serves_the_struct_the_flags_and_the_keys() {
        assert_eq!(parse(&[]), Sample::default());
        assert_eq!(Sample::default().rate, 2e-3);
        assert_eq!(Sample::default().seeds, List(vec![0, 1, 2]));
        assert_eq!(Sample::default().limit, None);
        let from_file: Sample = serde_json::from_str("{}").unwrap();
        assert_eq!(from_file, Sample::default());
    }

    #[test]
    fn flags_and_keys_override_it() {
        let given = parse(&["--rate", "0.5", "--seeds", "4,5", "--limit", "3"]);
        assert_eq!((given.rate, given.limit), (0.5, Some(3)));
        assert_eq!(given.seeds, List(vec![4, 5]));
        let from_file: Sample = serde_json::from_str(r#"{"seeds": [7]}"#).unwrap();
        assert_eq!(from_file.seeds, List(vec![7]));
        assert_eq!(from_file.rate, 2e-3);
    }

    #[test]
    fn a_bad_list_item_is_named() {
        let e = "1,x".parse::<List<u64>>().unwrap_err();
        assert!(e.contains("invalid digit"), "{e}");
    }
}
