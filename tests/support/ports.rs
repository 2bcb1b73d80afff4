//! Loopback ports for the servers tests start, shared by the test suites of several crates
//! (included with `#[path]`; std only).
//!
//! Ports come from below Linux's ephemeral range (32768 and up), so no outgoing connection can
//! take one between our check and the server binding it. Test processes run in parallel
//! (nextest runs each test in its own), and two of them could pick the same free port before
//! either server binds it; so a port handed out is also reserved, by creating a marker file,
//! and not handed out again for ten minutes.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a handed-out port stays reserved.
const RESERVATION: Duration = Duration::from_secs(600);

/// A loopback port in 22000..32000 that nobody listens on and no other test process was
/// handed in the last ten minutes.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join("etcd-rs-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let mut state = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        | 1;
    for attempt in 0..20_000u32 {
        // xorshift64: no dependency, and different per process and per call.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = 22_000 + (state % 10_000) as u16;
        // After 10,000 tries every port may be reserved by recent runs: then only the bind
        // check is left.
        let reserved = attempt >= 10_000 || reserve(&dir, port);
        if reserved && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 22000..32000");
}

fn reserve(dir: &Path, port: u16) -> bool {
    let marker = dir.join(port.to_string());
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_ok()
    };
    if create() {
        return true;
    }
    // A marker older than the reservation belongs to a finished run: take it over (of two
    // processes doing so at once, only one removes it).
    let stale = marker
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > RESERVATION);
    stale && std::fs::remove_file(&marker).is_ok() && create()
}
