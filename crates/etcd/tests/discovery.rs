//! Bootstrap by etcd discovery (`--discovery`): three of our members form a cluster through a
//! v2 discovery service (ours with `--enable-v2`, and etcd 3.4's), a fourth is refused as etcd
//! refuses it, and each bad discovery setup ends with etcd's message, never a silent hang.
//! The same for etcd 3.6's v3 discovery (`--discovery-token`, `--discovery-endpoints`) against
//! any v3 server.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use common::reference::{REF_ETCD, Single, available, curl};

const OURS: &str = env!("CARGO_BIN_EXE_etcd");

/// One of our members bootstrapping by discovery; killed when dropped.
struct Member {
    child: Child,
    name: String,
    client: String,
    peer: String,
    log: std::path::PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    /// A member bootstrapping by v3 discovery: `--discovery-token` on `endpoints`.
    fn spawn_v3(dir: &Path, name: &str, token: &str, endpoints: &str, extra: &[&str]) -> Member {
        std::fs::create_dir_all(dir).expect("member dir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(OURS)
            .args(["--name", name, "--data-dir"])
            .arg(dir.join(format!("{name}.etcd")))
            .args([
                "--discovery-token",
                token,
                "--discovery-endpoints",
                endpoints,
            ])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn etcd");
        Member {
            child,
            name: name.to_string(),
            client,
            peer,
            log,
        }
    }

    fn spawn(dir: &Path, name: &str, durl: &str, extra: &[&str]) -> Member {
        let peer = format!("http://127.0.0.1:{}", free_port());
        Member::spawn_as(dir, name, durl, &peer, &peer, extra)
    }

    /// A member advertising `peer` and listening on `listen_peer` (another port when it
    /// claims the URL of a member already running).
    fn spawn_as(
        dir: &Path,
        name: &str,
        durl: &str,
        peer: &str,
        listen_peer: &str,
        extra: &[&str],
    ) -> Member {
        std::fs::create_dir_all(dir).expect("member dir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(OURS)
            .args(["--name", name, "--data-dir"])
            .arg(dir.join(format!("{name}.etcd")))
            .args(["--discovery", durl])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", listen_peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn etcd");
        Member {
            child,
            name: name.to_string(),
            client,
            peer: peer.to_string(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/health` says true; fails with the log if the member exits first.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}; log:\n{}", self.name, self.log());
            }
            if curl(&format!("{}/health", self.client), &[])
                .body
                .contains("\"true\"")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become healthy; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to end by itself; returns its exit code and log.
    fn wait_exit(&mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code().unwrap_or(-1), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} kept running; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the log contains `text` while the member keeps running.
    fn wait_log(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before logging {text:?}:\n{log}",
                    self.name
                );
            }
            assert!(Instant::now() < deadline, "no {text:?} in the log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A fresh token of `size` members on the discovery service at `service` (a client URL).
fn new_token(service: &str, token: &str, size: &str) -> String {
    let durl = format!("{service}/v2/keys/_etcd/registry/{token}");
    let set = curl(
        &format!("{durl}/_config/size"),
        &["-XPUT", "-d", &format!("value={size}")],
    );
    assert!(set.status == 201 || set.status == 200, "{set:?}");
    durl
}

/// The member IDs etcd gives the members of a discovery-bootstrapped cluster: from the peer
/// URLs, with the discovery URL as the cluster token.
fn expected_id(peer: &str, durl: &str) -> String {
    format!(
        "{:x}",
        etcd_server::membership::member_id(&[peer.to_string()], durl, None)
    )
}

/// Three members bootstrap through the service at `service`; a fourth is refused with etcd's
/// message; the same member registering twice is told so.
fn three_members_then_refusals(service: &str, dir: &Path) {
    let durl = new_token(service, "three", "3");
    let mut members: Vec<Member> = ["m1", "m2", "m3"]
        .iter()
        .map(|name| Member::spawn(dir, name, &durl, &[]))
        .collect();
    for m in &mut members {
        m.wait_healthy();
    }

    // Every member sees the same three members, with etcd's IDs.
    let list = curl(
        &format!("{}/v3/cluster/member/list", members[0].client),
        &["-XPOST", "-d", "{}"],
    );
    let listed: serde_json::Value = serde_json::from_str(&list.body).expect("members JSON");
    let mut got: Vec<(String, String)> = listed["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["ID"].as_str().unwrap_or_default().to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            let hex = expected_id(&m.peer, &durl);
            let id = u64::from_str_radix(&hex, 16).expect("hex ID");
            (id.to_string(), m.name.clone())
        })
        .collect();
    want.sort();
    assert_eq!(got, want);

    // The registrations are what etcd writes: `<token>/<id>` = `name=peer URL`.
    let regs = curl(&format!("{durl}?recursive=true"), &[]);
    for m in &members {
        let entry = format!(
            "\"key\":\"/_etcd/registry/three/{}\",\"value\":\"{}={}\"",
            expected_id(&m.peer, &durl),
            m.name,
            m.peer
        );
        assert!(regs.body.contains(&entry), "{entry} not in {}", regs.body);
    }

    // A fourth member finds the cluster full, with either fallback (etcd 3.4.23 exits with
    // both), and leaves nothing behind in its data dir.
    for fallback in ["exit", "proxy"] {
        let mut fourth = Member::spawn(dir, "m4", &durl, &["--discovery-fallback", fallback]);
        let (code, log) = fourth.wait_exit();
        assert_eq!(code, 1, "{log}");
        assert!(
            log.contains("failed to join discovery cluster (discovery: cluster is full)"),
            "{log}"
        );
        assert!(
            log.contains("please generate a new discovery token and try to bootstrap again."),
            "{log}"
        );
        assert!(!dir.join("m4.etcd").join("member").join("wal").exists());
    }

    // m1 again, with an empty data dir: its ID is taken.
    let spare_port = format!("http://127.0.0.1:{}", free_port());
    let mut again = Member::spawn_as(
        &dir.join("again"),
        "m1",
        &durl,
        &members[0].peer,
        &spare_port,
        &[],
    );
    let (code, log) = again.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("member \"m1\" has previously registered with discovery service token"),
        "{log}"
    );
}

#[test]
fn three_members_bootstrap_through_our_discovery_service() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Single::start(OURS, &dir.path().join("service"), &["--enable-v2"], false);
    three_members_then_refusals(&service.client, dir.path());
}

#[test]
fn three_members_bootstrap_through_etcds_discovery_service() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Single::start(
        REF_ETCD,
        &dir.path().join("service"),
        &["--enable-v2"],
        false,
    );
    three_members_then_refusals(&service.client, dir.path());
}

/// Each bad setup ends with etcd's words and exit status 1, or, for a service that does not
/// answer, keeps trying and says so each time.
#[test]
fn bad_discovery_setups_get_etcds_errors() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Single::start(OURS, &dir.path().join("service"), &["--enable-v2"], false);
    let registry = format!("{}/v2/keys/_etcd/registry", service.client);

    let cases: Vec<(String, &str)> = vec![
        // No size key: etcd's client error, as etcd 3.4 prints it.
        (
            format!("{registry}/unset"),
            "failed to join discovery cluster (100: Key not found (/_etcd/registry/unset) [",
        ),
        // A size that is not a number.
        (
            new_token(&service.client, "bad-size", "three"),
            "failed to join discovery cluster (discovery: size key is bad)",
        ),
        // Not a v2 keys endpoint at all.
        (
            format!("{}/version/token", service.client),
            "failed to join discovery cluster (discovery: bad discovery endpoint)",
        ),
        // Not a URL (etcd 3.4 retries this one forever).
        (
            "discovery.example.com/token".to_string(),
            "is not an http:// or https:// URL",
        ),
    ];
    for (i, (durl, want)) in cases.iter().enumerate() {
        let mut m = Member::spawn(dir.path(), &format!("bad{i}"), durl, &[]);
        let (code, log) = m.wait_exit();
        assert_eq!(code, 1, "{durl}: {log}");
        assert!(log.contains(want), "{durl}: want {want:?} in:\n{log}");
    }

    // Nobody listens: etcd's error detail, then a retry announcement, and the member waits.
    let closed = format!("http://127.0.0.1:{}/v2/keys/_etcd/registry/t", free_port());
    let mut m = Member::spawn(dir.path(), "unreachable", &closed, &[]);
    let log = m.wait_log("retrying in 2s");
    assert!(log.contains("connect: connection refused"), "{log}");
    assert!(
        log.contains("cluster status check: error connecting to http://127.0.0.1:"),
        "{log}"
    );
}

/// Puts `key` = `value` on the v3 server at `client`.
fn v3_put(client: &str, key: &str, value: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = common::cluster::connect(client, Duration::from_secs(5))
            .await
            .expect("connect");
        c.put(key, value).await.expect("put");
    });
}

/// etcd 3.6's v3 discovery against the v3 server at `service`: three members, then a fourth
/// refused, then a token without a size and one with a bad size.
fn v3_three_members_then_refusals(service: &str, dir: &Path) {
    v3_put(service, "/_etcd/registry/three/_config/size", "3");
    let endpoints = service.trim_start_matches("http://");
    let mut members: Vec<Member> = ["m1", "m2", "m3"]
        .iter()
        .map(|name| Member::spawn_v3(dir, name, "three", endpoints, &[]))
        .collect();
    for m in &mut members {
        m.wait_healthy();
    }
    let list = curl(
        &format!("{}/v3/cluster/member/list", members[2].client),
        &["-XPOST", "-d", "{}"],
    );
    let listed: serde_json::Value = serde_json::from_str(&list.body).expect("members JSON");
    let mut got: Vec<(String, String)> = listed["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["ID"].as_str().unwrap_or_default().to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    // The token is the cluster token, as in etcd 3.6.
    let mut want: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            let id =
                etcd_server::membership::member_id(std::slice::from_ref(&m.peer), "three", None);
            (id.to_string(), m.name.clone())
        })
        .collect();
    want.sort();
    assert_eq!(got, want);

    let mut fourth = Member::spawn_v3(dir, "m4", "three", endpoints, &[]);
    let (code, log) = fourth.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("failed to join discovery cluster (discovery: cluster is full)"),
        "{log}"
    );

    let mut unset = Member::spawn_v3(dir, "unset", "no-such-token", endpoints, &[]);
    let (code, log) = unset.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("(discovery: size key not found)"), "{log}");

    v3_put(service, "/_etcd/registry/bad/_config/size", "-1");
    let mut bad = Member::spawn_v3(dir, "bad", "bad", endpoints, &[]);
    let (code, log) = bad.wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("(discovery: size key is bad)"), "{log}");
}

#[test]
fn v3_discovery_through_our_server() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Single::start(OURS, &dir.path().join("service"), &[], false);
    v3_three_members_then_refusals(&service.client, dir.path());
}

#[test]
fn v3_discovery_through_etcds_server() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Single::start(REF_ETCD, &dir.path().join("service"), &[], false);
    v3_three_members_then_refusals(&service.client, dir.path());
}

/// v2 and v3 discovery settings together are refused, as etcd 3.6 refuses them.
#[test]
fn v2_and_v3_discovery_together_are_refused() {
    let out = common::run_etcd(
        &[
            "--discovery",
            "http://127.0.0.1:1/v2/keys/t",
            "--discovery-token",
            "t",
            "--discovery-endpoints",
            "127.0.0.1:1",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "both v2 discovery settings (discovery, discovery-proxy) and v3 discovery settings"
        ),
        "{err}"
    );
}
