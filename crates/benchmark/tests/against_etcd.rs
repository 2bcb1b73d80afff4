//! End to end: runs `benchmark` against our `etcd` binary on loopback ports. The `etcd`
//! binary belongs to another crate, so this test uses `target/debug/etcd` only if it has been
//! built, and otherwise says so and passes.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn etcd_binary() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/etcd");
    path.exists().then_some(path)
}

#[path = "../../../tests/support/ports.rs"]
mod ports;
use ports::free_port;

/// Kills the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn benchmark(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_benchmark"))
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("benchmark runs")
}

fn succeeded(output: &Output) -> bool {
    let stdout = String::from_utf8_lossy(&output.stdout);
    output.status.success() && stdout.contains("Summary:") && !stdout.contains("Error distribution")
}

/// Our etcd on loopback ports, ready (a put succeeded): its data dir, the server (killed on
/// drop, before the dir goes), the benchmark endpoint and the client URL. `None` when the binary is not built.
fn start_etcd() -> Option<(tempfile::TempDir, Server, String, String)> {
    let Some(etcd) = etcd_binary() else {
        println!("note: target/debug/etcd is not built; skipping (cargo build -p etcd to run it)");
        return None;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (client_port, peer_port) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let server = Server(
        Command::new(etcd)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts"),
    );
    let endpoint = format!("127.0.0.1:{client_port}");
    // Ready when a put succeeds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !succeeded(&benchmark(&endpoint, &["put", "--total", "1"])) {
        assert!(Instant::now() < deadline, "etcd did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    Some((dir, server, endpoint, client_url))
}

#[test]
fn put_range_and_txn_against_etcd() {
    let Some((_dir, _server, endpoint, _)) = start_etcd() else {
        return;
    };

    let put = benchmark(
        &endpoint,
        &[
            "--conns",
            "2",
            "--clients",
            "4",
            "put",
            "--total",
            "200",
            "--key-space-size",
            "10",
        ],
    );
    assert!(succeeded(&put), "{}", String::from_utf8_lossy(&put.stdout));
    let stdout = String::from_utf8_lossy(&put.stdout);
    assert!(stdout.contains("Latency distribution:"), "{stdout}");

    let range = benchmark(
        &endpoint,
        &["range", "a", "--consistency", "s", "--total", "50"],
    );
    assert!(succeeded(&range));
    assert!(String::from_utf8_lossy(&range.stdout).starts_with("bench with serializable range\n"));

    let txn = benchmark(
        &endpoint,
        &[
            "txn-put",
            "--txn-ops",
            "3",
            "--total",
            "20",
            "--key-space-size",
            "5",
        ],
    );
    assert!(succeeded(&txn), "{}", String::from_utf8_lossy(&txn.stdout));

    let keepalive = benchmark(
        &endpoint,
        &["--clients", "2", "lease-keepalive", "--total", "20"],
    );
    assert!(
        succeeded(&keepalive),
        "{}",
        String::from_utf8_lossy(&keepalive.stdout)
    );
}

#[tokio::test]
async fn puts_as_a_user_once_auth_is_on() {
    use etcd_api::etcdserverpb::{AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest};
    let Some((_dir, _server, endpoint, client_url)) = start_etcd() else {
        return;
    };
    let mut c = etcd_client::Client::connect(&[client_url.as_str()], Default::default())
        .await
        .expect("connect");
    c.auth
        .user_add(AuthUserAddRequest {
            name: "root".into(),
            password: "rootpw".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.auth
        .user_grant_role(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
        .unwrap();
    c.auth.auth_enable(AuthEnableRequest {}).await.unwrap();

    let anonymous = benchmark(&endpoint, &["put", "--total", "20"]);
    assert!(!succeeded(&anonymous), "puts without a user went through");
    let as_root = benchmark(
        &endpoint,
        &[
            "--user",
            "root:rootpw",
            "--clients",
            "4",
            "put",
            "--total",
            "200",
        ],
    );
    assert!(
        succeeded(&as_root),
        "{}\n{}",
        String::from_utf8_lossy(&as_root.stdout),
        String::from_utf8_lossy(&as_root.stderr)
    );
    let authenticate = benchmark(&endpoint, &["authenticate", "root:rootpw", "--total", "10"]);
    assert!(
        succeeded(&authenticate),
        "{}",
        String::from_utf8_lossy(&authenticate.stdout)
    );
    let wrong = benchmark(&endpoint, &["authenticate", "root:wrong", "--total", "5"]);
    assert!(!succeeded(&wrong), "a wrong password authenticated");
    let no_password = benchmark(&endpoint, &["--user", "root", "put", "--total", "1"]);
    assert!(!no_password.status.success());
    assert!(String::from_utf8_lossy(&no_password.stderr).contains("needs a password"));
}
