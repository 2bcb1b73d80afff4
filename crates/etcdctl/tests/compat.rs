//! Our etcdctl against etcd 3.4's own (`/usr/bin/etcdctl`), both driving a real etcd 3.4
//! (`/usr/bin/etcd`) on random loopback ports: the same requests must print the same bytes
//! on stdout and stderr and exit with the same code, in every `--write-out` format.
//! Skipped, with a note, when the reference binaries are not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const REF_ETCD: &str = "/usr/bin/etcd";
const REF_CTL: &str = "/usr/bin/etcdctl";

fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etcdctl"))
}

fn have_reference() -> bool {
    if Path::new(REF_ETCD).exists() && Path::new(REF_CTL).exists() {
        return true;
    }
    eprintln!("note: {REF_ETCD} or {REF_CTL} missing (Debian etcd-server, etcd-client); skipping");
    false
}

#[path = "../../../tests/support/ports.rs"]
mod ports;
use ports::free_port;

struct Etcd {
    child: Child,
    client_url: String,
    peer_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_etcd_in(
    data_dir: &Path,
    name: &str,
    client: u16,
    peer: u16,
    extra: &[&str],
    dir: tempfile::TempDir,
) -> Etcd {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new(REF_ETCD);
    cmd.args([
        "--name",
        name,
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &format!("{name}={peer_url}"),
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd.spawn().expect("etcd starts");
    let etcd = Etcd {
        child,
        client_url,
        peer_url,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let out = run(REF_CTL, &etcd, &["endpoint", "health"], None);
        if out.status.success() {
            return etcd;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("etcd did not become healthy");
}

fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    start_etcd_in(&data, "default", free_port(), free_port(), &[], dir)
}

fn run(
    bin: impl AsRef<std::ffi::OsStr>,
    etcd: &Etcd,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(bin);
    cmd.env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .arg(format!("--endpoints={}", etcd.client_url))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin {
        use std::io::Write;
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes());
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait")
}

/// Drops what differs run to run: etcd's zap log lines (the Go client's warnings) and the
/// `took` durations of `endpoint health`.
fn normalize(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    let mut out = Vec::new();
    for line in s.split('\n') {
        if line.starts_with("{\"level\":") {
            continue;
        }
        let mut l = line.to_string();
        for key in ["took = ", "\"took\":\"", "\"Took\" : "] {
            if let Some(i) = l.find(key) {
                let start = i + key.len();
                let end = l[start..]
                    .find(['"', ',', ' '])
                    .map(|e| start + e)
                    .unwrap_or(l.len());
                l.replace_range(start..end, "T");
            }
        }
        out.push(l);
    }
    out.join("\n")
}

/// Runs both binaries; returns a description of the difference, if any.
fn compare(etcd: &Etcd, args: &[&str], stdin: Option<&str>) -> Option<String> {
    let a = run(REF_CTL, etcd, args, stdin);
    let b = run(ours(), etcd, args, stdin);
    let (ao, bo) = (normalize(&a.stdout), normalize(&b.stdout));
    let (ae, be) = (normalize(&a.stderr), normalize(&b.stderr));
    if ao != bo || ae != be || a.status.code() != b.status.code() {
        return Some(format!(
            "etcdctl {args:?}:\n  etcd's: code {:?}\n    stdout {ao:?}\n    stderr {ae:?}\n  ours:   code {:?}\n    stdout {bo:?}\n    stderr {be:?}",
            a.status.code(),
            b.status.code()
        ));
    }
    None
}

const FORMATS: [&str; 5] = ["simple", "json", "fields", "protobuf", "table"];

fn check_all(etcd: &Etcd, cases: &[Vec<&str>]) {
    let mut diffs = Vec::new();
    for case in cases {
        for f in FORMATS {
            // The table's column widths follow the measured latency.
            if f == "table" && case == &["endpoint", "health"] {
                continue;
            }
            // etcd's etcdctl panics on the header an alarm list lacks; we only match the code.
            if f == "fields" && case == &["alarm", "list"] {
                continue;
            }
            let mut args = vec!["-w", f];
            args.extend(case.iter().copied());
            if let Some(d) = compare(etcd, &args, None) {
                diffs.push(d);
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn read_only_requests_print_the_same() {
    if !have_reference() {
        return;
    }
    let etcd = start_etcd();
    for (k, v) in [
        ("foo", "bar"),
        ("foo2", "b\"a\nr"),
        ("k\u{e9}y", "v\u{1}"),
        ("zoo", "<&>"),
    ] {
        assert!(run(REF_CTL, &etcd, &["put", k, v], None).status.success());
    }
    let cases: Vec<Vec<&str>> = vec![
        vec!["get", "foo"],
        vec!["get", "foo", "--prefix"],
        vec!["get", "", "--from-key", "--keys-only"],
        vec!["get", "foo", "--print-value-only"],
        vec!["get", "--hex", "foo", "--prefix"],
        vec![
            "get",
            "a",
            "z",
            "--limit",
            "2",
            "--order",
            "DESCEND",
            "--sort-by",
            "VALUE",
        ],
        vec!["get", "foo", "--rev", "2", "--consistency", "s"],
        vec!["get", "nothing"],
        vec!["member", "list"],
        vec!["endpoint", "status", "--cluster"],
        vec!["endpoint", "hashkv"],
        vec!["endpoint", "health"],
        vec!["alarm", "list"],
        vec!["user", "list"],
        vec!["role", "list"],
        vec!["lease", "list"],
        vec!["version"],
    ];
    // Endpoint status carries a db size and raft index that the other run's requests move;
    // compare it in its own loop, with nothing written in between.
    check_all(&etcd, &cases);
}

/// A fresh single-member etcd whose advertised peer URL is fixed, so two of them get the same
/// member and cluster IDs (and, fed the same requests, the same revisions).
fn start_twin() -> Etcd {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let child = Command::new(REF_ETCD)
        .args([
            "--name",
            "twin",
            "--data-dir",
            &data.to_string_lossy(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            "http://127.0.0.1:1",
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2",
            "--initial-cluster",
            "twin=http://127.0.0.1:2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let etcd = Etcd {
        child,
        client_url,
        peer_url: "http://127.0.0.1:2".to_string(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if run(REF_CTL, &etcd, &["get", "x"], None).status.success() {
            return etcd;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("etcd did not start");
}

#[test]
fn writes_print_the_same() {
    if !have_reference() {
        return;
    }
    // etcd's etcdctl writes to one twin, ours to the other: every output must be identical.
    let (a_etcd, b_etcd) = (start_twin(), start_twin());
    let mut diffs = Vec::new();
    for f in FORMATS {
        for (args, stdin) in [
            (vec!["put", "K", "v1"], None),
            (vec!["put", "K", "v2", "--prev-kv"], None),
            (vec!["put", "K", "--ignore-value"], None),
            (vec!["del", "K", "--prev-kv"], None),
            (vec!["del", "nothing"], None),
            (vec!["put", "P1", "x"], None),
            (vec!["put", "P2", "y"], None),
            (vec!["del", "P", "--prefix", "--prev-kv"], None),
            (
                vec!["txn"],
                Some("value(\"x\") = \"y\"\n\nput K a\nget K\n\ndel K\n\n"),
            ),
            (
                vec!["txn", "-i"],
                Some("mod(\"x\") = \"0\"\n\nput K a --prev-kv\nget K --prefix\ndel K\n\nget x\n\n"),
            ),
            (vec!["compaction", "3"], None),
            (vec!["lease", "revoke", "1234"], None),
            (vec!["role", "add", "R"], None),
            (
                vec![
                    "role",
                    "grant-permission",
                    "R",
                    "readwrite",
                    "a",
                    "--prefix",
                ],
                None,
            ),
            (vec!["role", "grant-permission", "R", "read", "k"], None),
            (
                vec!["role", "grant-permission", "R", "write", "", "--from-key"],
                None,
            ),
            (vec!["role", "get", "R"], None),
            (
                vec!["role", "revoke-permission", "R", "a", "--prefix"],
                None,
            ),
            (vec!["role", "revoke-permission", "R", "k"], None),
            (vec!["role", "list"], None),
            (vec!["user", "add", "U:p"], None),
            (vec!["user", "add", "V", "--new-user-password=q"], None),
            (vec!["user", "grant-role", "U", "R"], None),
            (vec!["user", "get", "U"], None),
            (vec!["user", "get", "U", "--detail"], None),
            (vec!["user", "list"], None),
            (vec!["user", "revoke-role", "U", "R"], None),
            (
                vec!["user", "passwd", "U", "--interactive=false"],
                Some("newpw\n"),
            ),
            (vec!["user", "delete", "U"], None),
            (vec!["user", "delete", "V"], None),
            (vec!["user", "delete", "U"], None),
            (vec!["role", "delete", "R"], None),
        ] {
            let mut full = vec!["-w", f];
            full.extend(args.iter().copied());
            let a = run(REF_CTL, &a_etcd, &full, stdin);
            let b = run(ours(), &b_etcd, &full, stdin);
            let (ao, bo) = (normalize(&a.stdout), normalize(&b.stdout));
            let (ae, be) = (normalize(&a.stderr), normalize(&b.stderr));
            if ao != bo || ae != be || a.status.code() != b.status.code() {
                diffs.push(format!(
                    "{full:?}:\n  etcd's {:?} {ao:?} {ae:?}\n  ours   {:?} {bo:?} {be:?}",
                    a.status.code(),
                    b.status.code()
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn bad_input_fails_the_same() {
    if !have_reference() {
        return;
    }
    let etcd = start_etcd();
    let mut diffs = Vec::new();
    // Over clientv3's 2 MiB send limit: refused by the client, before any byte is sent.
    let oversized = "v".repeat(3_000_000);
    for (args, stdin) in [
        (vec!["put", "k"], Some(oversized.as_str())),
        (
            vec!["--endpoints=127.0.0.1:1", "--dial-timeout=1s", "get", "x"],
            None,
        ),
        (vec!["foo"], None),
        (vec!["get"], None),
        (vec!["get", "--bogus", "x"], None),
        (vec!["get", "-z"], None),
        (vec!["get", "--limit=abc", "x"], None),
        (vec!["--dial-timeout=xyz", "get", "x"], None),
        (vec!["-w", "xml", "get", "x"], None),
        (vec!["get", "x", "--consistency=q"], None),
        (vec!["get", "x", "--prefix", "--from-key"], None),
        (vec!["get", "x", "y", "--prefix"], None),
        (vec!["get", "x", "--order=UP"], None),
        (vec!["put"], None),
        (vec!["put", "k", "v", "--lease=zz"], None),
        (vec!["del"], None),
        (vec!["txn", "x"], None),
        (vec!["txn"], Some("bad\n")),
        (vec!["txn"], Some("mod(\"a\") > \"0\"\n\nfoo a\n")),
        (vec!["txn"], Some("")),
        (vec!["lease", "grant"], None),
        (vec!["lease", "grant", "x"], None),
        (vec!["lease", "revoke", "zz"], None),
        (vec!["lease", "revoke", "1234"], None),
        (vec!["lease", "timetolive", "1234"], None),
        (vec!["member", "add"], None),
        (vec!["member", "add", "a", "http://x:1"], None),
        (vec!["member", "remove", "xyz"], None),
        (vec!["compaction"], None),
        (vec!["compaction", "100000"], None),
        (vec!["role", "grant-permission", "r", "bogus", "k"], None),
        (vec!["user", "add", ":p"], None),
        (vec!["snapshot", "status"], None),
        (vec!["snapshot", "status", "/nonexistent"], None),
        (vec!["-w", "table", "get", "x"], None),
        (vec!["-w", "fields", "user", "list"], None),
        (vec!["watch"], None),
        (vec!["watch", "a", "--"], None),
        (vec!["elect", "e"], None),
        (vec!["lock"], None),
        (vec!["member"], None),
        (vec!["memb", "list", "-w", "table"], None),
        (vec!["--help"], None),
        (vec![], None),
        (vec!["get", "--help"], None),
        (vec!["help", "member", "add"], None),
        (vec!["lease", "keep-alive", "-h"], None),
        (vec!["snapshot", "restore", "-h"], None),
        (vec!["completion", "zsh", "-h"], None),
        (vec!["check"], None),
        (vec!["gte", "x"], None),
        (vec!["membr", "list"], None),
        (vec!["hel", "member"], None),
    ] {
        if let Some(d) = compare(&etcd, &args, stdin) {
            diffs.push(d);
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn snapshot_save_status_and_restore_work_with_real_etcd() {
    if !have_reference() {
        return;
    }
    let etcd = start_etcd();
    for i in 0..50 {
        let k = format!("key{i}");
        assert!(
            run(REF_CTL, &etcd, &["put", &k, "value"], None)
                .status
                .success()
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ours_snap = dir.path().join("ours.db");
    let ref_snap = dir.path().join("ref.db");
    let o = run(
        ours(),
        &etcd,
        &["snapshot", "save", &ours_snap.to_string_lossy()],
        None,
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("Snapshot saved at {}\n", ours_snap.display())
    );
    assert!(
        run(
            REF_CTL,
            &etcd,
            &["snapshot", "save", &ref_snap.to_string_lossy()],
            None
        )
        .status
        .success()
    );
    for f in FORMATS {
        for snap in [&ours_snap, &ref_snap] {
            let args = ["-w", f, "snapshot", "status", &snap.to_string_lossy()];
            if let Some(d) = compare(&etcd, &args, None) {
                panic!("{d}");
            }
        }
    }
    // Restore with ours; etcd 3.4 must start from it and serve the keys.
    let restored = dir.path().join("restored");
    let (client, peer) = (free_port(), free_port());
    let peer_url = format!("http://127.0.0.1:{peer}");
    let o = Command::new(ours())
        .env("ETCDCTL_API", "3")
        .args([
            "snapshot",
            "restore",
            &ours_snap.to_string_lossy(),
            "--name",
            "m1",
            "--initial-cluster",
            &format!("m1={peer_url}"),
            "--initial-advertise-peer-urls",
            &peer_url,
            "--data-dir",
            &restored.to_string_lossy(),
        ])
        .output()
        .expect("restore");
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("added member"));
    drop(etcd);
    let keep = tempfile::tempdir().expect("tempdir");
    let etcd2 = start_etcd_in(&restored, "m1", client, peer, &[], keep);
    let got = run(
        ours(),
        &etcd2,
        &["get", "key", "--prefix", "--keys-only"],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
        50
    );
    let members = run(REF_CTL, &etcd2, &["member", "list"], None);
    assert!(String::from_utf8_lossy(&members.stdout).contains(&etcd2.peer_url));
    // A second restore into the same dir is refused as etcdctl refuses it.
    let again = |bin: &Path| {
        Command::new(bin)
            .env("ETCDCTL_API", "3")
            .args([
                "snapshot",
                "restore",
                &ref_snap.to_string_lossy(),
                "--data-dir",
                &restored.to_string_lossy(),
            ])
            .output()
            .expect("restore")
    };
    let (a, b) = (again(Path::new(REF_CTL)), again(&ours()));
    assert_eq!(a.status.code(), b.status.code());
    assert_eq!(normalize(&a.stderr), normalize(&b.stderr));
}

#[test]
fn environment_variables_act_as_flags() {
    if !have_reference() {
        return;
    }
    let etcd = start_etcd();
    assert!(
        run(REF_CTL, &etcd, &["put", "foo", "bar"], None)
            .status
            .success()
    );
    let mut diffs = Vec::new();
    for (env, args) in [
        (vec![("ETCDCTL_WRITE_OUT", "json")], vec!["get", "foo"]),
        (vec![("ETCDCTL_HEX", "true")], vec!["get", "foo"]),
        (
            vec![
                ("ETCDCTL_DIAL_TIMEOUT", "3s"),
                ("ETCDCTL_COMMAND_TIMEOUT", "4s"),
            ],
            vec!["get", "foo"],
        ),
        (vec![("ETCDCTL_WRITE_OUT", "fields")], vec!["version"]),
        (vec![("ETCDCTL_WATCH_RANGE_END", "z")], vec!["watch"]),
    ] {
        let go = |bin: &std::ffi::OsStr, with_endpoint_flag: bool| {
            let mut cmd = Command::new(bin);
            cmd.env("ETCDCTL_API", "3");
            if with_endpoint_flag {
                cmd.arg(format!("--endpoints={}", etcd.client_url));
            } else {
                cmd.env("ETCDCTL_ENDPOINTS", &etcd.client_url);
            }
            for (k, v) in &env {
                cmd.env(k, v);
            }
            cmd.args(&args).stdin(Stdio::null()).output().expect("run")
        };
        for flag in [false, true] {
            let a = go(REF_CTL.as_ref(), flag);
            let b = go(ours().as_os_str(), flag);
            let strip_time = |s: &[u8]| {
                normalize(s)
                    .lines()
                    .map(|l| {
                        l.get(27..)
                            .filter(|_| l.contains(" | pkg/flags"))
                            .unwrap_or(l)
                            .to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if normalize(&a.stdout) != normalize(&b.stdout)
                || strip_time(&a.stderr) != strip_time(&b.stderr)
                || a.status.code() != b.status.code()
            {
                diffs.push(format!("{env:?} {args:?}: etcd's {a:?}\n ours {b:?}"));
            }
        }
    }
    // A variable shadowed by its flag is fatal.
    let shadowed = |bin: &std::ffi::OsStr| {
        Command::new(bin)
            .env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", &etcd.client_url)
            .arg(format!("--endpoints={}", etcd.client_url))
            .args(["get", "foo"])
            .output()
            .expect("run")
    };
    let (a, b) = (shadowed(REF_CTL.as_ref()), shadowed(ours().as_os_str()));
    assert_eq!(a.status.code(), b.status.code());
    assert!(
        String::from_utf8_lossy(&b.stderr)
            .contains("conflicting environment variable \"ETCDCTL_ENDPOINTS\"")
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Runs a watch for a while, then stops it; returns what it printed.
fn watch_output(bin: &std::ffi::OsStr, etcd: &Etcd, args: &[&str]) -> String {
    let mut child = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.client_url))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1000));
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn watch_history_prints_the_same() {
    if !have_reference() {
        return;
    }
    let etcd = start_etcd();
    for (args, stdin) in [
        (vec!["put", "w/a", "1"], None),
        (vec!["put", "w/b", "2"], None),
        (vec!["put", "w/a", "3"], None),
        (vec!["del", "w/b"], None),
        (vec!["txn"], Some("\nput w/c x\nput w/d y\n\n\n")),
    ] {
        assert!(run(REF_CTL, &etcd, &args, stdin).status.success());
    }
    let mut diffs = Vec::new();
    for f in FORMATS {
        for args in [
            vec!["watch", "w/", "--prefix", "--rev", "1"],
            vec!["watch", "w/a", "--rev", "1", "--prev-kv"],
            vec!["watch", "w/a", "w/c", "--rev", "2"],
            vec!["watch", "w/", "--prefix", "--rev", "1", "--hex"],
        ] {
            let mut full = vec!["-w", f];
            full.extend(args.iter().copied());
            let a = watch_output(REF_CTL.as_ref(), &etcd, &full);
            let b = watch_output(ours().as_os_str(), &etcd, &full);
            if a != b {
                diffs.push(format!("{full:?}:\n  etcd's {a:?}\n  ours   {b:?}"));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
