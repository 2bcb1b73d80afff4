//! Tests that need a namespace of their own (a network with a DNS server, a /run with a fake
//! journal): the test re-runs itself under `unshare`, and its body runs only inside.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Set in the copy of the test running inside the namespace.
const INSIDE: &str = "ETCD_TEST_INSIDE_NAMESPACE";

/// Outside: runs `test` again under `unshare <unshare_args>`, passes on its output, fails if
/// it failed, and returns false. Inside: returns true, and the caller runs the test's body.
/// Needs root and `tools`; without them prints a note and returns false.
pub fn inside(test: &str, unshare_args: &[&str], tools: &[&str]) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    let missing: Vec<&&str> = std::iter::once(&"/usr/bin/unshare")
        .chain(tools)
        .filter(|t| !Path::new(t).exists())
        .collect();
    if !root || !missing.is_empty() {
        eprintln!("note: {test} needs root and {missing:?}; skipping");
        return false;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("/usr/bin/unshare")
        .args(unshare_args)
        .arg("--")
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(INSIDE, "1")
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(text.contains("1 passed"), "the test did not run:\n{text}");
    false
}
