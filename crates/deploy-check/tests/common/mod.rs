//! What both checks need: where the deployment files are, and etcd 3.4's flag names as our
//! `etcd --help` lists them.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The repository's root (this crate is `crates/deploy-check`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads a file under the repository's root, naming it when it cannot.
pub fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The flag names (without `--`) of etcd's `--help` text in `crates/etcd/src/config/help.rs`,
/// which lists etcd 3.4's flags: every line that starts with two spaces and `--`.
pub fn etcd_flags() -> BTreeSet<String> {
    let help = read("crates/etcd/src/config/help.rs");
    let flags: BTreeSet<String> = help
        .lines()
        .filter_map(|line| line.strip_prefix("  --"))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect();
    // Guards the parsing above against a change of the help text's layout.
    for expected in [
        "name",
        "data-dir",
        "initial-cluster",
        "peer-auto-tls",
        "logger",
    ] {
        assert!(
            flags.contains(expected),
            "help.rs: flag --{expected} not found; has the layout of the help text changed? \
             found {flags:?}"
        );
    }
    flags
}

/// etcd's `flags.FlagToEnv`: `ETCD_` + the flag in upper case, `-` as `_`.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// The environment variable names etcd reads: one per flag.
pub fn etcd_variables() -> BTreeSet<String> {
    etcd_flags().iter().map(|f| env_name(f)).collect()
}
