//! Configuration: command-line flags layered over an optional TOML file.
//!
//! Every binary describes its settings once, as a `clap` struct that also
//! derives `serde`'s `Serialize` and `Deserialize`. A setting's flag name
//! (`--header-timeout`) and its TOML key (`header_timeout`) are the same
//! field, and its default lives in one place: the `clap` attribute, which
//! `--help` prints. [`load`] then merges, from lowest to highest priority:
//!
//! 1. the defaults (what `clap` gives with no flags at all),
//! 2. the keys of the `--config FILE`,
//! 3. the flags actually typed on the command line.
//!
//! A key in the file that is not a flag of the binary is an error, as a typo
//! in `nginx.conf` is: a silently ignored setting is worse than a refusal to
//! start.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file could not be read.
    Read(PathBuf, std::io::Error),
    /// The config file is not valid TOML, or a value has the wrong type.
    Parse(PathBuf, String),
    /// The config file names a setting this binary does not have.
    UnknownKey(PathBuf, String),
    /// The command line itself is wrong (clap's error, printed as clap would).
    Cli(clap::Error),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read config {}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "invalid config {}: {e}", p.display()),
            ConfigError::UnknownKey(p, k) => {
                write!(f, "invalid config {}: unknown setting `{k}`", p.display())
            }
            ConfigError::Cli(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses the process's command line into `C`, layering `--config FILE`
/// underneath it; exits like clap does for `--help`, `--version` and usage
/// errors, and with status 2 and a message for a bad config file.
pub fn load_or_exit<C>() -> C
where
    C: clap::Parser + Serialize + DeserializeOwned,
{
    match load_from(std::env::args_os()) {
        Ok(c) => c,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// Parses `args` (the first item is the program name) into `C`, reading the
/// TOML file named by the `config` flag, if `C` has one and it was given.
pub fn load_from<C, I, T>(args: I) -> Result<C, ConfigError>
where
    C: clap::Parser + Serialize + DeserializeOwned,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = C::command();
    let matches = cmd
        .try_get_matches_from_mut(args)
        .map_err(ConfigError::Cli)?;
    let cli = C::from_arg_matches(&matches).map_err(ConfigError::Cli)?;
    let path = match matches.try_get_one::<PathBuf>("config") {
        Ok(Some(p)) => p.clone(),
        _ => return Ok(cli),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read(path.clone(), e))?;
    merge_file(&cmd, &matches, &cli, &path, &text)
}

/// Merges the file's table under the flags typed on the command line.
fn merge_file<C>(
    cmd: &clap::Command,
    matches: &ArgMatches,
    cli: &C,
    path: &Path,
    text: &str,
) -> Result<C, ConfigError>
where
    C: Serialize + DeserializeOwned,
{
    // toml's messages may span lines (and end in a newline): one line, for
    // the error log.
    let parse_err = |e: &dyn fmt::Display| {
        let text = e.to_string();
        let one_line: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        ConfigError::Parse(path.to_path_buf(), one_line.join(" "))
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(&e))?;
    for key in table.keys() {
        let known = cmd.get_arguments().any(|a| a.get_id().as_str() == key);
        if !known || key == "config" {
            return Err(ConfigError::UnknownKey(path.to_path_buf(), key.clone()));
        }
    }
    // Every setting as clap parsed it (defaults included)...
    let all = toml::Table::try_from(cli).map_err(|e| parse_err(&e))?;
    for (key, value) in all {
        // ...fills in what the file does not say, and overrides what it does
        // say only when the flag was really typed.
        let typed = matches!(matches.value_source(&key), Some(ValueSource::CommandLine));
        if typed || !table.contains_key(&key) {
            table.insert(key, value);
        }
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e| parse_err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(clap::Parser, Serialize, Deserialize, Debug, PartialEq)]
    struct Demo {
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A number.
        #[arg(long, default_value_t = 8)]
        threads: u32,
        /// A name.
        #[arg(long, default_value = "x")]
        name: String,
        /// An optional file.
        #[arg(long)]
        log: Option<PathBuf>,
    }

    fn with_file(text: &str, args: &[&str]) -> Result<Demo, ConfigError> {
        let dir = std::env::temp_dir().join(format!("cfgtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{}.toml", text.len()));
        std::fs::write(&file, text).unwrap();
        let mut v = vec![
            "demo".to_string(),
            "--config".into(),
            file.display().to_string(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        load_from::<Demo, _, _>(v)
    }

    #[test]
    fn defaults_without_file() {
        let d: Demo = load_from(["demo"]).unwrap();
        assert_eq!((d.threads, d.name.as_str(), d.log), (8, "x", None));
    }

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let d = with_file("threads = 3\nname = \"file\"\n", &["--name", "flag"]).unwrap();
        assert_eq!(d.threads, 3);
        assert_eq!(d.name, "flag");
    }

    #[test]
    fn optional_values_come_from_the_file() {
        let d = with_file("log = \"/tmp/a.log\"\n", &[]).unwrap();
        assert_eq!(d.log, Some(PathBuf::from("/tmp/a.log")));
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        let e = with_file("treads = 3\n", &[]).unwrap_err();
        assert!(e.to_string().contains("unknown setting `treads`"), "{e}");
        let e = with_file("threads = \"many\"\n", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Parse(..)), "{e}");
    }
}
