//! Starting on etcd's data dir: `/usr/bin/etcd` (3.4) runs on a data dir, is stopped, and ours
//! starts on the same dir with no step in between, keeping the member and cluster IDs, every
//! key with its revisions, the HashKV, leases, users, roles and members; also a data dir made
//! by etcd's `snapshot restore`, and a whole 3-member etcd cluster switched offline. Every
//! comparison goes through etcd's own etcdctl. Skips with a note when /usr/bin/etcd or
//! /usr/bin/etcdctl are missing (Debian etcd-server, etcd-client).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

const REF_ETCD: &str = "/usr/bin/etcd";
const REF_CTL: &str = "/usr/bin/etcdctl";

fn have_reference() -> bool {
    let ok = Path::new(REF_ETCD).exists() && Path::new(REF_CTL).exists();
    if !ok {
        eprintln!(
            "note: {REF_ETCD} or {REF_CTL} missing (Debian etcd-server, etcd-client); skipping"
        );
    }
    ok
}

/// etcd's etcdctl against `endpoint`, as `user` when given; panics on failure.
fn ctl(endpoint: &str, user: Option<&str>, args: &[&str]) -> String {
    let out = ctl_output(endpoint, user, args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ctl_output(endpoint: &str, user: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(REF_CTL);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s");
    if let Some(user) = user {
        cmd.arg(format!("--user={user}"));
    }
    cmd.args(args).output().expect("run etcdctl")
}

/// Waits until a linearizable read through etcdctl succeeds.
fn wait_serving(endpoint: &str, user: Option<&str>, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "member exited with {status}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if ctl_output(endpoint, user, &["get", "probe"])
            .status
            .success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member at {endpoint} did not serve; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One member's flags, for either binary.
struct MemberSpec {
    name: String,
    data_dir: PathBuf,
    client_url: String,
    peer_url: String,
    initial_cluster: String,
    log: PathBuf,
}

impl MemberSpec {
    fn args(&self) -> Vec<String> {
        [
            "--name",
            &self.name,
            "--data-dir",
            &self.data_dir.display().to_string(),
            "--listen-client-urls",
            &self.client_url,
            "--advertise-client-urls",
            &self.client_url,
            "--listen-peer-urls",
            &self.peer_url,
            "--initial-advertise-peer-urls",
            &self.peer_url,
            "--initial-cluster",
            &self.initial_cluster,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn spawn(&self, binary: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(binary)
            .args(self.args())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn member")
    }
}

fn specs(dir: &Path, n: usize) -> Vec<MemberSpec> {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| MemberSpec {
            name: format!("m{i}"),
            data_dir: dir.join(format!("m{i}.etcd")),
            client_url: format!("http://127.0.0.1:{c}"),
            peer_url: format!("http://127.0.0.1:{p}"),
            initial_cluster: initial_cluster.clone(),
            log: dir.join(format!("m{i}.log")),
        })
        .collect()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// etcd lists leases in map order.
fn sorted_lines(s: &str) -> String {
    let mut lines: Vec<&str> = s.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// Everything a user can see of the data, through etcdctl: keys with revisions and leases,
/// the HashKV, leases, members, users and roles.
fn observe(endpoint: &str, user: Option<&str>) -> Vec<(String, String)> {
    let kvs: serde_json::Value = serde_json::from_str(&ctl(
        endpoint,
        user,
        &["get", "", "--from-key", "-w", "json"],
    ))
    .unwrap();
    let hashkv: serde_json::Value =
        serde_json::from_str(&ctl(endpoint, user, &["endpoint", "hashkv", "-w", "json"])).unwrap();
    let members: serde_json::Value =
        serde_json::from_str(&ctl(endpoint, user, &["member", "list", "-w", "json"])).unwrap();
    let header = &kvs["header"];
    vec![
        ("kvs".into(), kvs["kvs"].to_string()),
        ("revision".into(), header["revision"].to_string()),
        ("member_id".into(), header["member_id"].to_string()),
        ("cluster_id".into(), header["cluster_id"].to_string()),
        ("hash".into(), hashkv[0]["HashKV"]["hash"].to_string()),
        (
            "compact_revision".into(),
            hashkv[0]["HashKV"]["compact_revision"].to_string(),
        ),
        ("members".into(), members["members"].to_string()),
        (
            "leases".into(),
            sorted_lines(&ctl(endpoint, user, &["lease", "list"])),
        ),
        ("users".into(), ctl(endpoint, user, &["user", "list"])),
        ("roles".into(), ctl(endpoint, user, &["role", "list"])),
        (
            "role r1".into(),
            ctl(endpoint, user, &["role", "get", "r1"]),
        ),
        (
            "alice".into(),
            ctl(endpoint, user, &["user", "get", "alice"]),
        ),
    ]
}

/// etcd 3.4 runs with keys (some deleted, a compaction), leases with attached keys, users,
/// roles and auth on; it is killed (so its backend may lag its WAL, as after a crash); ours
/// starts on the same dir and shows exactly the same data, with the same hashes, and goes on.
#[test]
fn ours_starts_on_a_data_dir_etcd_ran_on() {
    if !have_reference() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = specs(dir.path(), 1).remove(0);
    let ep = spec.client_url.clone();
    let mut etcd = spec.spawn(REF_ETCD);
    wait_serving(&ep, None, &mut etcd, &spec.log);
    for i in 0..50 {
        ctl(&ep, None, &["put", &format!("k/{i:02}"), &format!("v{i}")]);
    }
    ctl(&ep, None, &["del", "k/1", "--prefix"]);
    ctl(&ep, None, &["compact", "20"]);
    let lease = ctl(&ep, None, &["lease", "grant", "3600"]);
    let lease_id = lease.split_whitespace().nth(1).unwrap().to_string();
    ctl(
        &ep,
        None,
        &["put", "leased/a", "x", &format!("--lease={lease_id}")],
    );
    ctl(
        &ep,
        None,
        &["put", "leased/b", "y", &format!("--lease={lease_id}")],
    );
    ctl(&ep, None, &["lease", "grant", "7200"]);
    ctl(&ep, None, &["user", "add", "root:rootpw"]);
    ctl(&ep, None, &["user", "grant-role", "root", "root"]);
    ctl(&ep, None, &["user", "add", "alice:alicepw"]);
    ctl(&ep, None, &["role", "add", "r1"]);
    ctl(
        &ep,
        None,
        &[
            "role",
            "grant-permission",
            "r1",
            "readwrite",
            "k/",
            "--prefix=true",
        ],
    );
    ctl(&ep, None, &["user", "grant-role", "alice", "r1"]);
    ctl(&ep, None, &["auth", "enable"]);
    let root = Some("root:rootpw");
    ctl(&ep, root, &["put", "k/last", "after auth"]);
    let before = observe(&ep, root);
    kill(&mut etcd);

    let mut ours = spec.spawn(env!("CARGO_BIN_EXE_etcd"));
    wait_serving(&ep, root, &mut ours, &spec.log);
    let after = observe(&ep, root);
    for ((what, want), (_, got)) in before.iter().zip(&after) {
        assert_eq!(got, want, "{what} differs after the switch");
    }
    // etcd's files are gone and ours are in place.
    let snap = spec.data_dir.join("member/snap");
    let names: Vec<String> = std::fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["db".to_string()], "member/snap holds {names:?}");
    // Passwords hashed by etcd still work, and so do the permissions.
    ctl(&ep, Some("alice:alicepw"), &["put", "k/alice", "ok"]);
    let denied = ctl_output(&ep, Some("alice:alicepw"), &["put", "other", "no"]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    // The lease still holds its keys: revoking it deletes them.
    ctl(&ep, root, &["lease", "revoke", &lease_id]);
    assert_eq!(
        ctl(&ep, root, &["get", "leased/", "--prefix", "--keys-only"]),
        ""
    );

    // A restart of ours on the converted dir is an ordinary restart.
    kill(&mut ours);
    let mut ours = spec.spawn(env!("CARGO_BIN_EXE_etcd"));
    wait_serving(&ep, root, &mut ours, &spec.log);
    assert_eq!(
        ctl(&ep, root, &["get", "k/alice", "--print-value-only"]).trim(),
        "ok"
    );
    kill(&mut ours);
}

/// etcd's `snapshot restore` makes a data dir (WAL, .snap with the v2 store, bbolt backend);
/// ours starts on it (etcd's TestIssue6361 does this with etcd).
#[test]
fn ours_starts_on_a_data_dir_etcds_restore_made() {
    if !have_reference() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = specs(dir.path(), 1).remove(0);
    let ep = source.client_url.clone();
    let mut etcd = source.spawn(REF_ETCD);
    wait_serving(&ep, None, &mut etcd, &source.log);
    for i in 0..20 {
        ctl(&ep, None, &["put", &format!("r/{i:02}"), &format!("v{i}")]);
    }
    let file = dir.path().join("backup.db");
    ctl(
        &ep,
        None,
        &["snapshot", "save", &file.display().to_string()],
    );
    let before = ctl(&ep, None, &["get", "r/", "--prefix", "-w", "json"]);
    kill(&mut etcd);

    let target = MemberSpec {
        name: "restored".into(),
        data_dir: dir.path().join("restored.etcd"),
        client_url: format!("http://127.0.0.1:{}", free_port()),
        peer_url: format!("http://127.0.0.1:{}", free_port()),
        initial_cluster: String::new(),
        log: dir.path().join("restored.log"),
    };
    let target = MemberSpec {
        initial_cluster: format!("restored={}", target.peer_url),
        ..target
    };
    let out = Command::new(REF_CTL)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", &file.display().to_string()])
        .args(["--data-dir", &target.data_dir.display().to_string()])
        .args([
            "--name",
            "restored",
            "--initial-cluster",
            &target.initial_cluster,
        ])
        .args(["--initial-advertise-peer-urls", &target.peer_url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ours = target.spawn(env!("CARGO_BIN_EXE_etcd"));
    wait_serving(&target.client_url, None, &mut ours, &target.log);
    let after = ctl(
        &target.client_url,
        None,
        &["get", "r/", "--prefix", "-w", "json"],
    );
    let kvs = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["kvs"].clone();
    assert_eq!(kvs(&after), kvs(&before));
    let members = ctl(&target.client_url, None, &["member", "list"]);
    assert!(
        members.contains("restored") && members.contains(&target.client_url),
        "{members}"
    );
    ctl(&target.client_url, None, &["put", "r/new", "x"]);
    kill(&mut ours);
}

/// etcd's etcdctl saves a snapshot of etcd 3.4 while writes go on; our restore (the library
/// behind our etcdctl and etcdutl) makes a data dir from it; ours serves every key the
/// snapshot holds.
#[test]
fn ours_restores_a_snapshot_etcd_saved_under_load() {
    if !have_reference() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = specs(dir.path(), 1).remove(0);
    let ep = source.client_url.clone();
    let mut etcd = source.spawn(REF_ETCD);
    wait_serving(&ep, None, &mut etcd, &source.log);
    for i in 0..100 {
        ctl(&ep, None, &["put", &format!("before/{i:03}"), "x"]);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (ep, stop) = (ep.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ctl_output(&ep, None, &["put", &format!("during/{i:05}"), "y"]);
                i += 1;
            }
        })
    };
    let file = dir.path().join("backup.db");
    ctl(
        &ep,
        None,
        &["snapshot", "save", &file.display().to_string()],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    kill(&mut etcd);
    let status = ctl(
        "127.0.0.1:1",
        None,
        &[
            "snapshot",
            "status",
            &file.display().to_string(),
            "-w",
            "json",
        ],
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();

    let target = specs(&dir.path().join("target"), 1).remove(0);
    std::fs::create_dir_all(dir.path().join("target")).unwrap();
    etcdutl::snapshot::restore(&etcdutl::snapshot::RestoreConfig {
        snapshot_path: file.clone(),
        name: target.name.clone(),
        output_data_dir: target.data_dir.clone(),
        output_wal_dir: target.data_dir.join("member/wal"),
        peer_urls: vec![target.peer_url.clone()],
        initial_cluster: target.initial_cluster.clone(),
        initial_cluster_token: "etcd-cluster".into(),
        skip_hash_check: false,
    })
    .unwrap();
    let mut ours = target.spawn(env!("CARGO_BIN_EXE_etcd"));
    wait_serving(&target.client_url, None, &mut ours, &target.log);
    let all: serde_json::Value = serde_json::from_str(&ctl(
        &target.client_url,
        None,
        &["get", "", "--from-key", "-w", "json"],
    ))
    .unwrap();
    assert_eq!(all["header"]["revision"], status["revision"], "{status}");
    let keys: Vec<&str> = all["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    // Every put made a new key at the next revision (from 2): the snapshot's revision says
    // how many keys it holds, and every one is there.
    assert!(keys.len() >= 100, "{} keys", keys.len());
    assert_eq!(keys.len() as i64, status["revision"].as_i64().unwrap() - 1);
    kill(&mut ours);
}

/// A 3-member etcd cluster, stopped as a whole, starts again as ours on the same data dirs:
/// same members, same data on every member, a leader, and writes replicate.
#[test]
fn a_stopped_etcd_cluster_restarts_as_ours() {
    if !have_reference() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let members = specs(dir.path(), 3);
    let mut children: Vec<Child> = members.iter().map(|m| m.spawn(REF_ETCD)).collect();
    for (m, c) in members.iter().zip(children.iter_mut()) {
        wait_serving(&m.client_url, None, c, &m.log);
    }
    let ep0 = members[0].client_url.clone();
    for i in 0..30 {
        ctl(&ep0, None, &["put", &format!("c/{i:02}"), &format!("v{i}")]);
    }
    let lease = ctl(&ep0, None, &["lease", "grant", "3600"]);
    let lease_id = lease.split_whitespace().nth(1).unwrap().to_string();
    ctl(
        &ep0,
        None,
        &["put", "c/leased", "x", &format!("--lease={lease_id}")],
    );
    let before: Vec<_> = members
        .iter()
        .map(|m| {
            // Every member has applied the last write before we look.
            ctl(&m.client_url, None, &["get", "c/leased"]);
            observe_plain(&m.client_url)
        })
        .collect();
    for c in &mut children {
        kill(c);
    }

    let mut ours: Vec<Child> = members
        .iter()
        .map(|m| m.spawn(env!("CARGO_BIN_EXE_etcd")))
        .collect();
    for (m, c) in members.iter().zip(ours.iter_mut()) {
        wait_serving(&m.client_url, None, c, &m.log);
    }
    for (m, want) in members.iter().zip(&before) {
        let got = observe_plain(&m.client_url);
        assert_eq!(&got, want, "member {} differs after the switch", m.name);
    }
    ctl(&members[1].client_url, None, &["put", "c/after", "switch"]);
    for m in &members {
        let v = ctl(
            &m.client_url,
            None,
            &["get", "c/after", "--print-value-only"],
        );
        assert_eq!(v.trim(), "switch", "member {}", m.name);
    }
    for c in &mut ours {
        kill(c);
    }
}

/// Member, keys and hash as seen through one member (serializable: its own data).
fn observe_plain(endpoint: &str) -> Vec<String> {
    let kvs: serde_json::Value = serde_json::from_str(&ctl(
        endpoint,
        None,
        &["get", "", "--from-key", "-w", "json", "--consistency=s"],
    ))
    .unwrap();
    let hashkv: serde_json::Value =
        serde_json::from_str(&ctl(endpoint, None, &["endpoint", "hashkv", "-w", "json"])).unwrap();
    let members: serde_json::Value =
        serde_json::from_str(&ctl(endpoint, None, &["member", "list", "-w", "json"])).unwrap();
    let mut member_list: Vec<String> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.to_string())
        .collect();
    member_list.sort();
    vec![
        kvs["kvs"].to_string(),
        kvs["header"]["member_id"].to_string(),
        kvs["header"]["cluster_id"].to_string(),
        hashkv[0]["HashKV"]["hash"].to_string(),
        member_list.join(","),
        sorted_lines(&ctl(endpoint, None, &["lease", "list"])),
    ]
}
