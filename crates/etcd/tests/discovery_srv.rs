//! DNS SRV discovery against a real DNS server: each test re-runs itself inside a network and
//! mount namespace of its own (`unshare -n -m`), where loopback is up, `/etc/resolv.conf`
//! (bind-mounted over) names Debian's dnsmasq on 127.0.0.1, and dnsmasq serves the test's
//! records. Nothing leaves the namespace: no public address is ever asked.
//!
//! Needs root (to make the namespaces and run dnsmasq there), `unshare`, `ip` and dnsmasq
//! (Debian's dnsmasq-base); without them the tests print a note and skip.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::reference::curl;

const OURS: &str = env!("CARGO_BIN_EXE_etcd");
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Re-runs `test` in a network and mount namespace of its own; true inside.
fn inside_namespace(test: &str) -> bool {
    common::namespace::inside(
        test,
        &["--net", "--mount"],
        &["/usr/sbin/ip", DNSMASQ, "/usr/bin/curl", "/usr/bin/mount"],
    )
}

fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().expect(cmd);
    assert!(status.success(), "{cmd} {args:?} failed");
}

/// The DNS server of the namespace; killed when dropped.
struct Dns(Child);

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loopback up, resolv.conf pointing at dnsmasq on 127.0.0.1, dnsmasq serving `records`
/// (its `--host-record` and `--srv-host` options) with the `.test` domain local (unknown
/// names there are NXDOMAIN).
fn start_dns(dir: &Path, records: &[String]) -> Dns {
    run("/usr/sbin/ip", &["link", "set", "lo", "up"]);
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").expect("resolv.conf");
    run(
        "/usr/bin/mount",
        &["--bind", resolv.to_str().unwrap(), "/etc/resolv.conf"],
    );
    let child = Command::new(DNSMASQ)
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--local=/test/",
        ])
        .args(records)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let dns = Dns(child);
    // Ready once it answers one of the records.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    loop {
        let ok = rt.block_on(async {
            let r = etcd_client::srv::Resolver::system().ok()?;
            r.resolve_tcp_addr("m1.example.test", 1).await.ok()
        });
        if ok.is_some() {
            return dns;
        }
        assert!(Instant::now() < deadline, "dnsmasq does not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn records() -> Vec<String> {
    let mut r = Vec::new();
    for i in 1..=4 {
        r.push(format!("--host-record=m{i}.example.test,127.0.0.1{i}"));
        r.push(format!("--host-record=t{i}.tls.test,127.0.0.2{i}"));
    }
    for i in 1..=3 {
        r.push(format!(
            "--srv-host=_etcd-server._tcp.example.test,m{i}.example.test,2380,0,0"
        ));
        r.push(format!(
            "--srv-host=_etcd-client._tcp.example.test,m{i}.example.test,2379,0,0"
        ));
        r.push(format!(
            "--srv-host=_etcd-server-ssl._tcp.tls.test,t{i}.tls.test,2380,0,0"
        ));
    }
    // A record pointing at a host that does not exist.
    r.push("--srv-host=_etcd-server._tcp.nowhere.test,ghost.nowhere.test,2380,0,0".to_string());
    r
}

/// An etcd process of the namespace; killed when dropped.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(dir: &Path, label: &str, args: &[String]) -> Proc {
        let log = dir.join(format!("{label}.log"));
        let child = Command::new(OURS)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn etcd");
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_healthy(&mut self, client: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !curl(&format!("{client}/health"), &[])
            .body
            .contains("\"true\"")
        {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited with {status}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "not healthy:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_exit(&mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code().unwrap_or(-1), self.log());
            }
            assert!(Instant::now() < deadline, "kept running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A member `name` of `domain` at `ip`, advertising `scheme://host:2380` for peers.
fn member_args(
    dir: &Path,
    name: &str,
    domain: &str,
    host: &str,
    ip: &str,
    scheme: &str,
) -> Vec<String> {
    [
        "--name",
        name,
        "--discovery-srv",
        domain,
        "--initial-cluster-token",
        domain,
        "--initial-advertise-peer-urls",
        &format!("{scheme}://{host}:2380"),
        "--listen-peer-urls",
        &format!("{scheme}://{ip}:2380"),
        "--listen-client-urls",
        &format!("http://{ip}:2379"),
        "--advertise-client-urls",
        &format!("http://{host}:2379"),
        "--data-dir",
        dir.join(format!("{name}.etcd")).to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// (name, peer URLs) of the members, from the JSON gateway at `client`.
fn member_list(client: &str) -> Vec<(String, String)> {
    let answer = curl(
        &format!("{client}/v3/cluster/member/list"),
        &["-XPOST", "-d", "{}"],
    );
    let v: serde_json::Value = serde_json::from_str(&answer.body).expect("member list JSON");
    let mut out: Vec<(String, String)> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["peerURLs"][0].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Three members find each other from `_etcd-server._tcp.example.test`; etcdctl and the
/// gateway find them from `_etcd-client._tcp.example.test`; a member missing from the records
/// is refused with etcd's message.
#[test]
fn members_bootstrap_from_srv_records() {
    if !inside_namespace("members_bootstrap_from_srv_records") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _dns = start_dns(dir.path(), &records());
    let mut members: Vec<Proc> = (1..=3)
        .map(|i| {
            let args = member_args(
                dir.path(),
                &format!("m{i}"),
                "example.test",
                &format!("m{i}.example.test"),
                &format!("127.0.0.1{i}"),
                "http",
            );
            Proc::spawn(dir.path(), &format!("m{i}"), &args)
        })
        .collect();
    for (i, m) in members.iter_mut().enumerate() {
        m.wait_healthy(&format!("http://127.0.0.1{}:2379", i + 1));
    }
    let want: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("m{i}"), format!("http://m{i}.example.test:2380")))
        .collect();
    assert_eq!(member_list("http://127.0.0.11:2379"), want);
    assert!(
        members[0]
            .log()
            .contains("got bootstrap from DNS for etcd-server at m1=http://m1.example.test:2380")
    );

    // etcdctl (ours, built beside the server) finds the members by their client records
    // (`endpoint health` takes --endpoints only, in etcd's etcdctl as in ours).
    let etcdctl = Path::new(OURS).with_file_name("etcdctl");
    if etcdctl.exists() {
        let out = Command::new(&etcdctl)
            .args(["--discovery-srv", "example.test", "--insecure-discovery"])
            .args(["member", "list"])
            .output()
            .expect("etcdctl");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        for i in 1..=3 {
            assert!(
                text.contains(&format!(", started, m{i}, http://m{i}.example.test:2380, ")),
                "{text}"
            );
        }
    } else {
        eprintln!(
            "note: {} not built; etcdctl part skipped",
            etcdctl.display()
        );
    }

    // The gateway too.
    let gateway_args: Vec<String> = [
        "gateway",
        "start",
        "--discovery-srv",
        "example.test",
        "--insecure-discovery",
        "--listen-addr",
        "127.0.0.1:23790",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut gateway = Proc::spawn(dir.path(), "gateway", &gateway_args);
    gateway.wait_healthy("http://127.0.0.1:23790");
    assert!(
        gateway.log().contains("m1.example.test.:2379"),
        "{}",
        gateway.log()
    );

    // A member the records do not list.
    let args = member_args(
        dir.path(),
        "m4",
        "example.test",
        "m4.example.test",
        "127.0.0.14",
        "http",
    );
    let (code, log) = Proc::spawn(dir.path(), "m4", &args).wait_exit();
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("cannot find local etcd member \"m4\" in SRV records"),
        "{log}"
    );
}

/// Bad DNS setups end with a message and exit status 1: a domain with no records (NXDOMAIN)
/// and records pointing at a host that does not exist.
#[test]
fn bad_srv_setups_are_refused_with_a_message() {
    if !inside_namespace("bad_srv_setups_are_refused_with_a_message") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _dns = start_dns(dir.path(), &records());
    for (domain, want) in [
        (
            "missing.test",
            "lookup _etcd-server._tcp.missing.test on 127.0.0.1:53: no such host",
        ),
        (
            "nowhere.test",
            "error querying DNS SRV records for _etcd-server lookup ghost.nowhere.test",
        ),
    ] {
        let args = member_args(
            dir.path(),
            "m1",
            domain,
            "m1.example.test",
            "127.0.0.11",
            "http",
        );
        let (code, log) = Proc::spawn(dir.path(), domain, &args).wait_exit();
        assert_eq!(code, 1, "{domain}: {log}");
        assert!(log.contains(want), "{domain}: want {want:?} in:\n{log}");
    }
}

/// A TLS cluster from `_etcd-server-ssl._tcp.tls.test`: https peer URLs, certificates for
/// the records' host names, client certificates required between peers.
#[test]
fn tls_members_bootstrap_from_ssl_srv_records() {
    if !inside_namespace("tls_members_bootstrap_from_ssl_srv_records") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _dns = start_dns(dir.path(), &records());
    let pki = Pki::new(dir.path());
    let mut members: Vec<Proc> = (1..=3)
        .map(|i| {
            let host = format!("t{i}.tls.test");
            let (cert, key) = pki.issue(&format!("t{i}"), &[&host]);
            let mut args = member_args(
                dir.path(),
                &format!("t{i}"),
                "tls.test",
                &host,
                &format!("127.0.0.2{i}"),
                "https",
            );
            args.extend([
                "--peer-cert-file".to_string(),
                cert.display().to_string(),
                "--peer-key-file".to_string(),
                key.display().to_string(),
                "--peer-trusted-ca-file".to_string(),
                pki.ca().display().to_string(),
                "--peer-client-cert-auth".to_string(),
            ]);
            Proc::spawn(dir.path(), &format!("t{i}"), &args)
        })
        .collect();
    for (i, m) in members.iter_mut().enumerate() {
        m.wait_healthy(&format!("http://127.0.0.2{}:2379", i + 1));
    }
    let want: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("t{i}"), format!("https://t{i}.tls.test:2380")))
        .collect();
    assert_eq!(member_list("http://127.0.0.21:2379"), want);
}
