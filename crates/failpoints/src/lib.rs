//! Named failpoints: places in the member where a fault-injection test can make it crash, stall
//! or misbehave, to prove that it recovers and that the checkers notice what they must.
//!
//! Built without the `failpoints` feature (every release build), each point is an empty inline
//! function and nothing here exists at run time. Built with it, points are configured by
//! name, with gofail's terms, the way etcd's failpoint builds are:
//! - at start, from `GOFAIL_FAILPOINTS` (`name=term;name=term`);
//! - at run time, over HTTP on `GOFAIL_HTTP` (served by the server crate): `PUT /name` with
//!   the term as body, `DELETE /name`, `GET /` lists them.
//!
//! A term is `[p%][n*]action[(arg)]`, chained with `->`: `sleep(500)` stalls the thread that
//! reaches the point, `pause` stalls it until the point is changed, `return` (and gofail's
//! `panic`) crashes the member on the spot, as a power cut would stop it: no destructor runs,
//! nothing is flushed. The `unsafe*` points are switches instead: set to `return`, they make
//! the member break a guarantee on purpose (see [`names`]).
//!
//! Names are etcd's where etcd has a point at the same place, so the same fault scenarios
//! read the same against either implementation.

/// Whether this build has failpoints compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// The environment variable that, in a build with failpoints, simulates power loss: set to
/// `1`, the WAL and the backend keep what they write in memory until they fdatasync it, so a
/// killed member loses every unsynced write, as a machine losing power loses its page cache.
pub const POWER_LOSS_ENV: &str = "FAILPOINTS_POWER_LOSS";

/// Whether this member simulates power loss (see [`POWER_LOSS_ENV`]). Always false without
/// failpoints: a release build never holds writes back.
pub fn power_loss_simulated() -> bool {
    ENABLED && std::env::var(POWER_LOSS_ENV).is_ok_and(|v| v == "1")
}

/// The points, by name.
pub mod names {
    /// Before and after the Raft loop writes a Ready's entries and hard state to the WAL.
    pub const RAFT_BEFORE_SAVE: &str = "raftBeforeSave";
    pub const RAFT_AFTER_SAVE: &str = "raftAfterSave";
    /// Before and after the WAL's fdatasync. A `sleep` or `pause` here is a stalled disk.
    pub const WAL_BEFORE_SYNC: &str = "walBeforeSync";
    pub const WAL_AFTER_SYNC: &str = "walAfterSync";
    /// Before and after the backend commits an apply batch.
    pub const BACKEND_BEFORE_COMMIT: &str = "beforeCommit";
    pub const BACKEND_AFTER_COMMIT: &str = "afterCommit";
    /// Before and after a Raft snapshot is taken (backend made durable, WAL marker written).
    pub const RAFT_BEFORE_SAVE_SNAP: &str = "raftBeforeSaveSnap";
    pub const RAFT_AFTER_SAVE_SNAP: &str = "raftAfterSaveSnap";
    /// While a leader streams a snapshot to a follower, before each chunk.
    pub const SNAPSHOT_DURING_SEND: &str = "snapshotDuringSend";
    /// Before and after a follower replaces its backend with a received snapshot.
    pub const RAFT_BEFORE_APPLY_SNAP: &str = "raftBeforeApplySnap";
    pub const RAFT_AFTER_APPLY_SNAP: &str = "raftAfterApplySnap";
    /// Before and after a compaction's deletions are written (they commit with their apply
    /// batch, between `beforeCommit` and `afterCommit`).
    pub const COMPACT_BEFORE_COMMIT: &str = "compactBeforeCommitBatch";
    pub const COMPACT_AFTER_COMMIT: &str = "compactAfterCommitBatch";
    /// Defragmentation: before and after the backend file is rewritten in place.
    pub const DEFRAG_BEFORE_COPY: &str = "defragBeforeCopy";
    pub const DEFRAG_AFTER_COPY: &str = "defragAfterCopy";
    /// Before and after a committed membership change is applied.
    pub const BEFORE_APPLY_CONF_CHANGE: &str = "beforeApplyOneConfChange";
    pub const AFTER_APPLY_CONF_CHANGE: &str = "afterApplyOneConfChange";

    /// Switch: the WAL and the backend skip fdatasync, so writes are acknowledged before they
    /// are durable. Only a power loss (not a process crash) shows it.
    pub const UNSAFE_SKIP_FSYNC: &str = "unsafeSkipFsync";
    /// Switch: linearizable reads are served from the local store without a read index, as
    /// serializable ones are, so a member cut off from its peers serves stale reads.
    pub const UNSAFE_STALE_LINEARIZABLE_READS: &str = "unsafeStaleLinearizableReads";

    /// Every point at which the member can be crashed, for a runner to pick from.
    pub const CRASH_POINTS: &[&str] = &[
        RAFT_BEFORE_SAVE,
        RAFT_AFTER_SAVE,
        WAL_BEFORE_SYNC,
        WAL_AFTER_SYNC,
        BACKEND_BEFORE_COMMIT,
        BACKEND_AFTER_COMMIT,
        RAFT_BEFORE_SAVE_SNAP,
        RAFT_AFTER_SAVE_SNAP,
        SNAPSHOT_DURING_SEND,
        RAFT_BEFORE_APPLY_SNAP,
        RAFT_AFTER_APPLY_SNAP,
        COMPACT_BEFORE_COMMIT,
        COMPACT_AFTER_COMMIT,
        DEFRAG_BEFORE_COPY,
        DEFRAG_AFTER_COPY,
        BEFORE_APPLY_CONF_CHANGE,
        AFTER_APPLY_CONF_CHANGE,
    ];
}

/// A crash point: does what the point is configured to (sleep, pause, crash), nothing when it
/// is not configured or failpoints are not built in.
#[inline(always)]
pub fn point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    imp::point(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// A switch: true while the point is set to `return`. Always false without failpoints.
#[inline(always)]
pub fn switched_on(name: &'static str) -> bool {
    #[cfg(feature = "failpoints")]
    return imp::switched_on(name);
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// Why a failpoint could not be configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// This build has no failpoints (build with `--features failpoints`).
    NotBuiltIn,
    /// `name=term` without the `=`, or an empty name.
    Malformed(String),
    /// A term the failpoint library does not understand.
    BadTerm { name: String, reason: String },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NotBuiltIn => write!(
                f,
                "this etcd was built without failpoints (build it with --features failpoints)"
            ),
            ConfigError::Malformed(spec) => {
                write!(f, "bad failpoint {spec:?}: expected name=term")
            }
            ConfigError::BadTerm { name, reason } => {
                write!(f, "bad term for failpoint {name}: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// gofail's term in the failpoint library's syntax: its `panic` crashes the process (a Go
/// panic nobody recovers), which here is `return`; everything else reads the same.
fn translate(term: &str) -> String {
    term.split("->")
        .map(|action| {
            let task_start = action.rfind(['%', '*']).map_or(0, |i| i + 1);
            let (prefix, task) = action.split_at(task_start);
            if task == "panic" || task.starts_with("panic(") {
                format!("{prefix}return")
            } else {
                action.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("->")
}

/// Sets `name` to `term` (gofail's syntax; `off` disables it).
pub fn configure(name: &str, term: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::Malformed(format!("{name}={term}")));
    }
    #[cfg(feature = "failpoints")]
    return fail::cfg(name, &translate(term.trim())).map_err(|reason| ConfigError::BadTerm {
        name: name.to_string(),
        reason,
    });
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = translate(term);
        Err(ConfigError::NotBuiltIn)
    }
}

/// Configures every `name=term` of a `;`-separated list (`GOFAIL_FAILPOINTS`).
pub fn configure_all(specs: &str) -> Result<(), ConfigError> {
    for spec in specs.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, term) = spec
            .split_once('=')
            .ok_or_else(|| ConfigError::Malformed(spec.to_string()))?;
        configure(name.trim(), term)?;
    }
    Ok(())
}

/// Disables `name`, waking any thread paused at it.
pub fn remove(name: &str) {
    #[cfg(feature = "failpoints")]
    fail::remove(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// The configured points and their terms, sorted by name.
pub fn list() -> Vec<(String, String)> {
    #[cfg(feature = "failpoints")]
    {
        let mut all = fail::list();
        all.sort();
        all
    }
    #[cfg(not(feature = "failpoints"))]
    Vec::new()
}

#[cfg(feature = "failpoints")]
mod imp {
    pub fn point(name: &'static str) {
        if fail::eval(name, |_| ()).is_some() {
            crash(name);
        }
    }

    pub fn switched_on(name: &'static str) -> bool {
        fail::eval(name, |_| ()).is_some()
    }

    /// Ends the process at once, as a power cut or `kill -9` would: no unwinding, no
    /// destructors, no buffered write flushed.
    fn crash(name: &str) -> ! {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "failpoint {name}: crashing the member");
        // SAFETY: getpid and kill have no preconditions; SIGKILL cannot be caught, so the
        // process ends here.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gofail_panic_becomes_a_crash() {
        assert_eq!(translate("panic"), "return");
        assert_eq!(translate("panic(\"boom\")"), "return");
        assert_eq!(translate("50%panic"), "50%return");
        assert_eq!(
            translate("10%2*panic->sleep(100)"),
            "10%2*return->sleep(100)"
        );
        assert_eq!(translate("sleep(100)"), "sleep(100)");
        assert_eq!(translate("1*pause"), "1*pause");
    }

    #[test]
    fn malformed_lists_are_refused() {
        assert_eq!(
            configure_all("raftBeforeSave"),
            Err(ConfigError::Malformed("raftBeforeSave".into()))
        );
        assert!(matches!(
            configure("", "return"),
            Err(ConfigError::Malformed(_))
        ));
    }

    #[cfg(not(feature = "failpoints"))]
    #[test]
    fn without_the_feature_nothing_can_be_set() {
        assert_eq!(
            configure("raftBeforeSave", "return"),
            Err(ConfigError::NotBuiltIn)
        );
        assert!(!switched_on(names::UNSAFE_SKIP_FSYNC));
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn switches_follow_their_configuration() {
        let name = names::UNSAFE_STALE_LINEARIZABLE_READS;
        assert!(!switched_on(name));
        configure_all(&format!("{name}=return")).unwrap();
        assert!(switched_on(name));
        assert!(list().iter().any(|(n, t)| n == name && t == "return"));
        remove(name);
        assert!(!switched_on(name));
        assert!(matches!(
            configure(name, "nonsense(("),
            Err(ConfigError::BadTerm { .. })
        ));
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_sleeping_point_stalls_its_caller() {
        configure("testSleep", "sleep(50)").unwrap();
        let started = std::time::Instant::now();
        point("testSleep");
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        remove("testSleep");
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_count_limits_how_often_a_point_fires() {
        configure("testOnce", "1*return").unwrap();
        assert!(switched_on("testOnce"));
        assert!(!switched_on("testOnce"));
        remove("testOnce");
    }
}
