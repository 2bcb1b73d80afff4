//! The members of a run: real processes of the binary under test on loopback ports, each with
//! its data dir and log, that the nemesis kills (SIGKILL), pauses (SIGSTOP/SIGCONT) and
//! restarts on the same data dir. With failpoints, each member serves gofail's control
//! endpoint (`GOFAIL_HTTP`); with power loss, each holds its unsynced writes in memory, so a
//! SIGKILL loses them as a power cut would (`FAILPOINTS_POWER_LOSS`, our failpoint builds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
use crate::netproxy::Network;

pub struct Member {
    pub name: String,
    pub client_url: String,
    /// Where the member listens for peers.
    listen_peer_url: String,
    /// What it advertises: its proxy when the network is proxied.
    pub peer_url: String,
    /// Joins a running cluster (`--initial-cluster-state existing`) when started on an empty
    /// data dir: true once it has been replaced.
    joins_existing: bool,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// `host:port` of its failpoint control, when failpoints are on.
    pub failpoint_addr: Option<String>,
    child: Option<Child>,
    paused: bool,
}

/// What the members are started with beyond the cluster's flags.
#[derive(Clone, Debug, Default)]
pub struct MemberOptions {
    /// Serve failpoint control (the binary must be built with failpoints).
    pub failpoints: bool,
    /// Hold unsynced writes in memory, to be lost on SIGKILL (needs failpoints).
    pub power_loss: bool,
    /// More flags for every member.
    pub extra_flags: Vec<String>,
}

pub struct Cluster {
    pub binary: PathBuf,
    pub members: Vec<Member>,
    initial_cluster: String,
    extra: Vec<String>,
    options: MemberOptions,
}

impl Cluster {
    /// Starts `size` members of `binary` under `dir`, with fast Raft timings and
    /// `--snapshot-count 100` so snapshots are taken and sent while the faults go on. With a
    /// `network`, peer traffic goes through its proxies (call from within a tokio runtime).
    pub fn start(
        binary: &Path,
        size: usize,
        dir: &Path,
        network: Option<&Network>,
        options: &MemberOptions,
    ) -> std::io::Result<Cluster> {
        let mut members = Vec::new();
        for i in 0..size {
            let listen_port = free_port();
            let listen_peer_url = format!("http://127.0.0.1:{listen_port}");
            let peer_url = match network {
                None => listen_peer_url.clone(),
                Some(network) => {
                    let proxy_port = free_port();
                    let listener = std::net::TcpListener::bind(("127.0.0.1", proxy_port))?;
                    listener.set_nonblocking(true)?;
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    tokio::spawn(network.clone().serve(listener, i, listen_port));
                    format!("http://127.0.0.1:{proxy_port}")
                }
            };
            members.push(Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                listen_peer_url,
                peer_url,
                data_dir: dir.join(format!("m{i}.etcd")),
                log_path: dir.join(format!("m{i}.log")),
                joins_existing: false,
                failpoint_addr: options
                    .failpoints
                    .then(|| format!("127.0.0.1:{}", free_port())),
                child: None,
                paused: false,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            binary: binary.to_path_buf(),
            members,
            initial_cluster,
            extra: [
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--snapshot-count",
                "100",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            options: options.clone(),
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        self.spawn_with_failpoints(i, None)
    }

    /// Starts member `i`, with `failpoints` (gofail's `name=term;...`) set from its first
    /// instruction on, when given.
    fn spawn_with_failpoints(&mut self, i: usize, failpoints: Option<&str>) -> std::io::Result<()> {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)?;
        let mut command = Command::new(&self.binary);
        if let Some(addr) = &m.failpoint_addr {
            command.env("GOFAIL_HTTP", addr);
        }
        if self.options.power_loss {
            command.env("FAILPOINTS_POWER_LOSS", "1");
        }
        if let Some(failpoints) = failpoints {
            command.env("GOFAIL_FAILPOINTS", failpoints);
        }
        let child = command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.listen_peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args([
                "--initial-cluster-state",
                if m.joins_existing { "existing" } else { "new" },
            ])
            .args(&self.extra)
            .args(&self.options.extra_flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.members[i].child = Some(child);
        self.members[i].paused = false;
        Ok(())
    }

    /// SIGKILL: no chance to sync or say goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.members[i].paused = false;
    }

    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// [`Cluster::restart`] with failpoints set from the start (for points reached early,
    /// such as applying the snapshot a new member is sent).
    pub fn restart_with_failpoints(&mut self, i: usize, failpoints: &str) -> std::io::Result<()> {
        self.kill(i);
        self.spawn_with_failpoints(i, Some(failpoints))
    }

    fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.members[i].child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Kills the member and deletes its data dir: it was removed from the cluster, and starts
    /// again (after [`Cluster::restart`]) as a new member joining the running cluster.
    pub fn wipe(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        let dir = &self.members[i].data_dir;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        self.members[i].joins_existing = true;
        Ok(())
    }

    /// Whether the member's process was started and has ended by itself (crashed at a
    /// failpoint, say); not a member this runner killed or has not started again.
    pub fn crashed(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            None => false,
            Some(child) => !matches!(child.try_wait(), Ok(None)),
        }
    }

    /// SIGSTOP: the member freezes mid-whatever, its connections open.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.members[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.members[i].paused = false;
    }

    /// Every member running and not paused.
    pub fn heal(&mut self) -> std::io::Result<()> {
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i);
            }
            let exited = match self.members[i].child.as_mut() {
                None => true,
                Some(child) => child.try_wait()?.is_some(),
            };
            if exited {
                self.spawn(i)?;
            }
        }
        Ok(())
    }

    /// The last lines of each member's log, for a failure report.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            let log = std::fs::read_to_string(&m.log_path).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {} ({})\n", m.name, m.log_path.display()));
            out.push_str(&all[all.len().saturating_sub(lines)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// Member IDs to slots, from the member list (names are `m<slot>`).
    pub async fn member_ids(&self) -> Result<HashMap<u64, usize>, String> {
        let url = &self.members[0].client_url;
        let mut c = crate::workload::client(url)?;
        let list = c
            .cluster
            .member_list(etcd_api::etcdserverpb::MemberListRequest::default())
            .await
            .map_err(|e| format!("member list: {}", e.message()))?;
        Ok(list
            .into_inner()
            .members
            .iter()
            .filter_map(|m| Some((m.id, m.name.strip_prefix('m')?.parse().ok()?)))
            .collect())
    }

    /// Waits until a linearizable read succeeds on every member.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for m in &self.members {
            loop {
                if read_ok(&m.client_url).await {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{} did not become healthy", m.name));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// The cluster shared between the nemesis and the run; a panic while it was held leaves it as
/// it was, which is still the cluster to clean up.
pub fn lock(cluster: &std::sync::Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    cluster.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i);
            }
            self.kill(i);
        }
    }
}

async fn read_ok(url: &str) -> bool {
    let options = etcd_client::ConnectOptions {
        dial_timeout: Duration::from_millis(500),
        request_timeout: Some(Duration::from_secs(1)),
        ..etcd_client::ConnectOptions::default()
    };
    match etcd_client::Client::connect(&[url], options).await {
        Ok(mut c) => c.get("health").await.is_ok(),
        Err(_) => false,
    }
}
