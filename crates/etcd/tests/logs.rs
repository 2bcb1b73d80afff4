//! `--logger zap` as etcd 3.4 writes it: every line of ours is a JSON object with etcd's keys
//! (`level`, `ts`, `caller`, `msg`), and the lines etcd writes about a member's start and stop
//! carry, in ours, the same fields with the same JSON types (both binaries run side by side with
//! the same flags, one start and one SIGTERM each).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use common::reference::{REF_ETCD, available, curl};
use serde_json::Value;

const OURS: &str = env!("CARGO_BIN_EXE_etcd");

/// The start and stop lines both must write.
const LIFECYCLE: &[&str] = &[
    "starting an etcd server",
    "opened backend db",
    "starting local member",
    "now serving peer/client/metrics",
    "serving peer traffic",
    "published local member to cluster through raft",
    "serving client traffic insecurely; this is strongly discouraged!",
    "received signal; shutting down",
    "closing etcd server",
    "skipped leadership transfer for single voting member cluster",
    "closed etcd server",
];

/// Runs `binary` as a one-member cluster with `--logger zap` until healthy, stops it with
/// SIGTERM, and returns its log lines.
fn run_zap(binary: &str, dir: &Path) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log = dir.with_extension("log");
    let mut child = Command::new(binary)
        .args(["--logger", "zap", "--name", "m", "--data-dir"])
        .arg(dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("m={peer}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn etcd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !curl(&format!("{client}/health"), &[])
        .body
        .contains("\"true\"")
    {
        assert!(Instant::now() < deadline, "{binary} did not become healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // etcd re-raises the signal after its cleanup (it dies of SIGTERM); ours exits 0.
    let exit = child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        exit.success() || exit.signal() == Some(15),
        "{binary} exited with {exit}"
    );
    std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The first line of each message, parsed.
fn by_message(lines: &[String]) -> BTreeMap<String, serde_json::Map<String, Value>> {
    let mut out = BTreeMap::new();
    for line in lines {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(line)
            && let Some(Value::String(msg)) = map.get("msg")
        {
            out.entry(msg.clone()).or_insert(map);
        }
    }
    out
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn zap_lines_carry_etcds_keys_and_types() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = run_zap(OURS, &dir.path().join("ours"));
    let theirs = run_zap(REF_ETCD, &dir.path().join("etcd"));

    // Every line of ours is a zap JSON object.
    for line in &ours {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["level", "ts", "caller", "msg"] {
            assert!(
                parsed.get(key).is_some_and(Value::is_string),
                "no {key}: {line}"
            );
        }
        let level = parsed["level"].as_str().unwrap();
        assert!(
            ["debug", "info", "warn", "error", "panic", "fatal"].contains(&level),
            "{line}"
        );
    }

    let ours = by_message(&ours);
    let theirs = by_message(&theirs);
    for msg in LIFECYCLE {
        let want = theirs
            .get(*msg)
            .unwrap_or_else(|| panic!("etcd wrote no {msg:?} line"));
        let got = ours
            .get(*msg)
            .unwrap_or_else(|| panic!("ours wrote no {msg:?} line; ours: {:?}", ours.keys()));
        assert_eq!(got["level"], want["level"], "{msg}");
        for (key, value) in want {
            let mine = got
                .get(key)
                .unwrap_or_else(|| panic!("{msg:?}: ours has no {key:?}: {got:?}"));
            assert_eq!(
                json_type(mine),
                json_type(value),
                "{msg:?}: {key:?} is {mine} in ours, {value} in etcd's"
            );
        }
    }
}

/// A log file that cannot be opened and a journal that is not there stop the start with etcd's
/// words and exit status 1; several outputs each get every line.
#[test]
fn bad_outputs_are_refused_and_every_output_gets_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("etcd.log");
    let missing = missing.to_str().unwrap();
    let out = common::run_etcd(&["--logger", "zap", "--log-outputs", missing], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error verifying flags, open sink \"{missing}\": open {missing}: no such file or \
             directory. See 'etcd --help'."
        )),
        "{err}"
    );
    if !Path::new("/run/systemd/journal/socket").exists() {
        let out = common::run_etcd(
            &["--logger", "zap", "--log-outputs", "systemd/journal"],
            &[],
        );
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                "error verifying flags, can't find journal (dial unixgram \
                 /run/systemd/journal/socket: connect: no such file or directory)"
            ),
            "{err}"
        );
    }

    // stderr and a file: the same lines in both.
    let file = dir.path().join("etcd.log");
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let stderr_log = dir.path().join("stderr.log");
    let mut child = Command::new(OURS)
        .args(["--logger", "zap", "--log-outputs"])
        .arg(format!("stderr,{}", file.display()))
        .arg("--data-dir")
        .arg(dir.path().join("m.etcd"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !curl(&format!("{client}/health"), &[])
        .body
        .contains("\"true\"")
    {
        assert!(Instant::now() < deadline, "not healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let in_file = std::fs::read_to_string(&file).unwrap();
    let in_stderr = std::fs::read_to_string(&stderr_log).unwrap();
    assert!(in_file.contains("\"msg\":\"published local member to cluster through raft\""));
    assert_eq!(in_file, in_stderr);
}

/// `--log-outputs systemd/journal`: each zap line reaches journald's socket as etcd's journal
/// writer sends it (MESSAGE is the JSON line; PRIORITY, PACKAGE, SYSLOG_IDENTIFIER). The test
/// runs in a mount namespace with a tmpfs on /run, where it plays journald.
#[test]
fn journal_gets_etcds_fields() {
    if !common::namespace::inside(
        "journal_gets_etcds_fields",
        &["--mount"],
        &["/usr/bin/mount", "/usr/bin/curl"],
    ) {
        return;
    }
    let status = Command::new("/usr/bin/mount")
        .args(["-t", "tmpfs", "tmpfs", "/run"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all("/run/systemd/journal").unwrap();
    let journal = std::os::unix::net::UnixDatagram::bind("/run/systemd/journal/socket").unwrap();
    journal
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut child = Command::new(OURS)
        .args(["--logger", "zap", "--log-outputs", "systemd/journal"])
        .arg("--data-dir")
        .arg(dir.path().join("m.etcd"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let entry = loop {
        let n = journal.recv(&mut buf).expect("a journal entry");
        let entry = String::from_utf8_lossy(&buf[..n]).into_owned();
        if entry.contains("published local member to cluster through raft") {
            break entry;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let fields: BTreeMap<&str, &str> = entry.lines().filter_map(|l| l.split_once('=')).collect();
    let message: Value = serde_json::from_str(fields["MESSAGE"]).expect("MESSAGE is the zap line");
    assert_eq!(
        message["msg"],
        "published local member to cluster through raft"
    );
    assert_eq!(fields["PRIORITY"], "6");
    assert!(!fields["PACKAGE"].is_empty());
    assert_eq!(fields["SYSLOG_IDENTIFIER"], "etcd");
}
