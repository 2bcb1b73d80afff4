//! Running under systemd (`Type=notify`): READY=1 reaches `$NOTIFY_SOCKET` only once the
//! member serves (not while its cluster has no quorum), STOPPING=1 when SIGTERM stops it, and a
//! leader stopped by SIGTERM hands its leadership to a peer first, as etcd does.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

const OURS: &str = env!("CARGO_BIN_EXE_etcd");

struct Member {
    child: Child,
    name: String,
    client: String,
    log: std::path::PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Member {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "{} kept running:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A static three-member cluster's settings: names, client and peer URLs.
struct Plan {
    members: Vec<(String, String, String)>,
}

impl Plan {
    fn new() -> Plan {
        let members = (1..=3)
            .map(|i| {
                (
                    format!("m{i}"),
                    format!("http://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        Plan { members }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|(n, _, p)| format!("{n}={p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i`, telling systemd's protocol to `notify` when given.
    fn spawn(&self, dir: &Path, i: usize, notify: Option<&Path>) -> Member {
        let (name, client, peer) = &self.members[i];
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(OURS);
        cmd.args(["--name", name, "--data-dir"])
            .arg(dir.join(format!("{name}.etcd")))
            .args([
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
            ])
            .args([
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        if let Some(socket) = notify {
            cmd.env("NOTIFY_SOCKET", socket);
        }
        Member {
            child: cmd.spawn().expect("spawn etcd"),
            name: name.clone(),
            client: client.clone(),
            log,
        }
    }
}

/// The next datagram on `socket`, or None after `wait`.
fn next_notice(socket: &UnixDatagram, wait: Duration) -> Option<String> {
    socket.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 256];
    match socket.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("notify socket: {e}"),
    }
}

/// (leader, member ID) as the member at `client` reports them.
async fn status(client: &str) -> Option<(u64, u64)> {
    let mut c = common::cluster::connect(client, Duration::from_secs(2))
        .await
        .ok()?;
    let s = c
        .maintenance
        .status(etcd_api::etcdserverpb::StatusRequest {})
        .await
        .ok()?
        .into_inner();
    Some((s.leader, s.header?.member_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_serving_then_stopping_and_leadership_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    let plan = Plan::new();

    // Alone, m1 has no quorum: it must not say it is ready.
    let mut m1 = plan.spawn(dir.path(), 0, Some(&socket_path));
    let early = tokio::task::block_in_place(|| next_notice(&socket, Duration::from_secs(2)));
    assert_eq!(
        early,
        None,
        "READY before the cluster has a quorum:\n{}",
        m1.log()
    );

    let m2 = plan.spawn(dir.path(), 1, None);
    let m3 = plan.spawn(dir.path(), 2, None);
    let ready = tokio::task::block_in_place(|| next_notice(&socket, Duration::from_secs(60)));
    assert_eq!(ready.as_deref(), Some("READY=1"), "{}", m1.log());
    // Ready means serving: a linearizable read answers at once.
    let mut client = common::cluster::connect(&m1.client, Duration::from_secs(5))
        .await
        .expect("connect");
    client.get("anything").await.expect("read after READY=1");

    // Make m1 the leader, so that stopping it must hand leadership over: ask whoever leads
    // to move leadership to m1 until m1 leads.
    let (_, m1_id) = status(&m1.client).await.expect("status");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut leader = None;
        for m in [&m1, &m2, &m3] {
            if status(&m.client).await.is_some_and(|(l, id)| l == id) {
                leader = Some(m);
            }
        }
        match leader {
            Some(m) if m.name == "m1" => break,
            Some(m) => {
                let mut c = common::cluster::connect(&m.client, Duration::from_secs(5))
                    .await
                    .expect("connect to the leader");
                let _ = c
                    .maintenance
                    .move_leader(etcd_api::etcdserverpb::MoveLeaderRequest { target_id: m1_id })
                    .await;
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        assert!(Instant::now() < deadline, "m1 never became the leader");
    }
    // Every member knows m1 leads (the followers learn it from its heartbeats).
    let deadline = Instant::now() + Duration::from_secs(20);
    for m in [&m1, &m2, &m3] {
        while status(&m.client).await.map(|(l, _)| l) != Some(m1_id) {
            assert!(Instant::now() < deadline, "{} does not see m1 lead", m.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    m1.sigterm();
    let stopping = tokio::task::block_in_place(|| next_notice(&socket, Duration::from_secs(30)));
    assert_eq!(stopping.as_deref(), Some("STOPPING=1"));
    let code = tokio::task::block_in_place(|| m1.wait_exit());
    assert_eq!(code, 0, "{}", m1.log());
    let log = m1.log();
    assert!(log.contains("transferred leadership to"), "{log}");

    // The new leader was in place before m1 went: the others agree on it at once.
    let (l2, _) = status(&m2.client)
        .await
        .unwrap_or_else(|| panic!("m2 status; m2:\n{}\nm1:\n{log}", m2.log()));
    let (l3, _) = status(&m3.client)
        .await
        .unwrap_or_else(|| panic!("m3 status; m3:\n{}\nm1:\n{log}", m3.log()));
    assert_eq!(l2, l3);
    assert!(l2 != 0 && l2 != m1_id, "leader {l2:x}");
    assert!(
        log.contains(&format!("transferred leadership to {l2:x}")),
        "{log}"
    );
}
