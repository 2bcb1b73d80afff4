//! Clusters of real `etcd` processes on loopback, for fault tests: start, SIGKILL and restart,
//! SIGSTOP and SIGCONT, partitions through a fault-injecting TCP proxy on peer traffic, and
//! membership changes; a client load that records every acknowledged write; a monitor of the
//! (term, leader) pairs members report; and the final checks (no acknowledged write lost, the
//! same revision and HashKV on every member, at most one leader per term).
//!
//! Linux only: the proxy tells which member opened a peer connection by looking the
//! connection's socket up in `/proc`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    HashKvRequest, MemberAddRequest, MemberListRequest, MemberRemoveRequest, RangeRequest,
    StatusRequest, StatusResponse,
};
use etcd_client::{Client, ClientError, ConnectOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Short Raft timers so that elections after a fault take about a second, not several.
pub const FAST_RAFT: &[&str] = &["--heartbeat-interval", "50", "--election-timeout", "500"];

/// How long any one wait for the cluster may take before the test fails.
const WAIT_MAX: Duration = Duration::from_secs(40);
/// Per-request timeout of the load's clients: a write to a stopped or cut-off member gives up
/// after this, and the writer moves on to another member.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Per-request timeout of the monitor's and the checks' Status calls.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
const MONITOR_INTERVAL: Duration = Duration::from_millis(20);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A loopback port nobody listens on, below Linux's ephemeral range (32768 and up): the member
/// binds it after we release it, and a port from the ephemeral range could meanwhile be taken
/// by any outgoing connection on the machine (the proxies, the clients, other tests).
pub fn cluster_port() -> u16 {
    loop {
        let port = rand::random_range(22_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub async fn connect(url: &str, request_timeout: Duration) -> Result<Client, ClientError> {
    let options = ConnectOptions {
        dial_timeout: Duration::from_secs(1),
        request_timeout: Some(request_timeout),
        ..ConnectOptions::default()
    };
    Client::connect(&[url], options).await
}

/// One member slot. A slot keeps its index for the whole test; a removed member keeps its slot.
pub struct Member {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_url: String,
    /// Where the member listens for peers.
    pub listen_peer_url: String,
    /// What the member advertises: its proxy when the cluster is proxied.
    pub peer_url: String,
    pub log_path: PathBuf,
    /// Set once the member answered; 0 before.
    pub id: u64,
    pub removed: bool,
    initial_cluster: String,
    existing: bool,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--name",
            &self.name,
            "--data-dir",
            &self.data_dir.display().to_string(),
            "--listen-client-urls",
            &self.client_url,
            "--advertise-client-urls",
            &self.client_url,
            "--listen-peer-urls",
            &self.listen_peer_url,
            "--initial-advertise-peer-urls",
            &self.peer_url,
            "--initial-cluster",
            &self.initial_cluster,
            "--initial-cluster-state",
            if self.existing { "existing" } else { "new" },
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the member's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// State shared by the cluster, its proxies, the monitor and the load.
#[derive(Default)]
struct Shared {
    /// The client URL of each slot; `None` once the member is removed.
    endpoints: Mutex<Vec<Option<String>>>,
    /// The pid of each slot's running process, for the proxies to tell who dials.
    pids: Mutex<Vec<Option<u32>>>,
    net: Mutex<Network>,
    leaders: Mutex<LeaderLog>,
    stop: AtomicBool,
}

/// The proxies' view of the network: who is cut off, and the connections to cut.
#[derive(Default)]
struct Network {
    isolated: HashSet<usize>,
    conns: HashMap<u64, ProxiedConn>,
    next_conn: u64,
    /// Connections attributed to the member that opened them.
    identified: u64,
    /// Connections whose dialing member could not be found (they are cut during partitions).
    unidentified: u64,
}

struct ProxiedConn {
    from: Option<usize>,
    to: usize,
    abort: AbortHandle,
}

impl Network {
    /// Whether traffic from `from` (unknown: `None`) to `to` is cut right now.
    fn cuts(&self, from: Option<usize>, to: usize) -> bool {
        if self.isolated.contains(&to) {
            return true;
        }
        match from {
            Some(from) => self.isolated.contains(&from),
            // Could be the isolated member: cut rather than leak through the partition.
            None => !self.isolated.is_empty(),
        }
    }

    fn cut_connections(&mut self) {
        let cut: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| self.cuts(c.from, c.to))
            .map(|(id, _)| *id)
            .collect();
        for id in cut {
            if let Some(conn) = self.conns.remove(&id) {
                conn.abort.abort();
            }
        }
    }
}

/// (term, leader) pairs reported by the members. A pair counts once the same member reported
/// it twice in a row: a member's term and leader are two separate atomics in the server, so a
/// single Status may pair a new leader with the previous term.
#[derive(Default)]
struct LeaderLog {
    last: HashMap<usize, (u64, u64)>,
    /// term -> (leader, the slot that first reported it)
    leaders: BTreeMap<u64, (u64, usize)>,
    violations: Vec<String>,
    samples: u64,
}

impl LeaderLog {
    fn record(&mut self, slot: usize, status: &StatusResponse) {
        self.samples += 1;
        let header_term = status.header.as_ref().map_or(0, |h| h.raft_term);
        if status.leader == 0 || header_term != status.raft_term {
            self.last.remove(&slot);
            return;
        }
        let pair = (status.raft_term, status.leader);
        if self.last.insert(slot, pair) != Some(pair) {
            return;
        }
        let (term, leader) = pair;
        let (first_leader, first_slot) = *self.leaders.entry(term).or_insert((leader, slot));
        if first_leader != leader && self.violations.len() < 20 {
            self.violations.push(format!(
                "term {term}: member {slot} reports leader {leader:x}, member {first_slot} reported {first_leader:x}"
            ));
        }
    }

    fn forget(&mut self, slot: usize) {
        self.last.remove(&slot);
    }
}

pub struct ClusterOptions {
    pub size: usize,
    /// Route peer traffic through a fault-injecting proxy per member, for partitions.
    pub proxied: bool,
    /// Flags given to every member, after the cluster's own.
    pub args: Vec<String>,
}

impl ClusterOptions {
    pub fn new(size: usize) -> ClusterOptions {
        ClusterOptions {
            size,
            proxied: false,
            args: FAST_RAFT.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn proxied(mut self) -> ClusterOptions {
        self.proxied = true;
        self
    }

    pub fn arg(mut self, flag: &str, value: &str) -> ClusterOptions {
        self.args.push(flag.to_string());
        self.args.push(value.to_string());
        self
    }
}

pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    pub members: Vec<Member>,
    shared: Arc<Shared>,
    proxied: bool,
    args: Vec<String>,
    /// Proxies and monitor tasks, stopped on drop.
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Cluster {
    /// Starts a new cluster and waits until every member serves linearizable reads.
    pub async fn start(options: ClusterOptions) -> Cluster {
        let mut attempt = 1;
        loop {
            let mut cluster = Cluster {
                dir: Some(tempfile::tempdir().expect("temp dir")),
                members: Vec::new(),
                shared: Arc::default(),
                proxied: options.proxied,
                args: options.args.clone(),
                tasks: Vec::new(),
                started: Instant::now(),
            };
            for _ in 0..options.size {
                cluster.new_slot().await;
            }
            let initial_cluster = cluster.initial_cluster();
            for m in &mut cluster.members {
                m.initial_cluster = initial_cluster.clone();
            }
            let slots: Vec<usize> = (0..options.size).collect();
            match cluster.try_start_all(&slots).await {
                Ok(()) => return cluster,
                // Another process took one of the ports between our check and the member's
                // bind: start over on other ports.
                Err(log) if attempt < 3 && log.contains("address already in use") => {
                    eprintln!("a port was taken; starting the cluster again");
                    attempt += 1;
                }
                Err(log) => panic!("{log}"),
            }
        }
    }

    /// Prints a step of the test with the time since the cluster started.
    pub fn step(&self, what: &str) {
        eprintln!("[{:7.3}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// Allocates ports (and a proxy) for a member not started yet, and starts watching it.
    async fn new_slot(&mut self) -> usize {
        let slot = self.members.len();
        let base = self.dir.as_ref().expect("temp dir").path().to_path_buf();
        let name = format!("m{slot}");
        let listen_peer_url = format!("http://127.0.0.1:{}", cluster_port());
        let peer_url = if self.proxied {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
            let port = listener.local_addr().expect("proxy address").port();
            let target = listen_peer_url.trim_start_matches("http://").to_string();
            self.tasks.push(tokio::spawn(run_proxy(
                listener,
                slot,
                target,
                self.shared.clone(),
            )));
            format!("http://127.0.0.1:{port}")
        } else {
            listen_peer_url.clone()
        };
        let client_url = format!("http://127.0.0.1:{}", cluster_port());
        self.members.push(Member {
            data_dir: base.join(format!("{name}.etcd")),
            log_path: base.join(format!("{name}.log")),
            name,
            client_url: client_url.clone(),
            listen_peer_url,
            peer_url,
            id: 0,
            removed: false,
            initial_cluster: String::new(),
            existing: false,
            extra_args: self.args.clone(),
            child: None,
        });
        self.shared
            .endpoints
            .lock()
            .unwrap()
            .push(Some(client_url.clone()));
        self.shared.pids.lock().unwrap().push(None);
        self.tasks
            .push(tokio::spawn(monitor(slot, client_url, self.shared.clone())));
        slot
    }

    /// `name=peer-url` for every member not removed, as `--initial-cluster` wants it.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts a stopped member without waiting for it to serve (it may be unable to).
    /// Starts a member with flags added for this start only.
    pub fn spawn_with(&mut self, slot: usize, extra: &[&str]) {
        let saved = self.members[slot].extra_args.clone();
        self.members[slot]
            .extra_args
            .extend(extra.iter().map(|s| s.to_string()));
        self.spawn(slot);
        self.members[slot].extra_args = saved;
    }

    pub fn spawn(&mut self, slot: usize) {
        let m = &mut self.members[slot];
        assert!(m.child.is_none(), "member {slot} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .expect("open log file");
        let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(m.args())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.shared.pids.lock().unwrap()[slot] = Some(child.id());
        m.child = Some(child);
    }

    /// The slots of members not removed.
    pub fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|s| !self.members[*s].removed)
            .collect()
    }

    pub fn url(&self, slot: usize) -> &str {
        &self.members[slot].client_url
    }

    pub async fn client(&self, slot: usize, request_timeout: Duration) -> Client {
        connect(self.url(slot), request_timeout)
            .await
            .unwrap_or_else(|e| panic!("connect to member {slot}: {e}"))
    }

    /// Waits until the member serves a linearizable read (it is up, has a leader, applies),
    /// and learns its ID.
    pub async fn wait_ready(&mut self, slot: usize) {
        if let Err(e) = self.try_wait_ready(slot).await {
            panic!("{e}");
        }
    }

    /// As `wait_ready`, but an early exit of the member is an error with its log.
    async fn try_wait_ready(&mut self, slot: usize) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            if let Some(child) = self.members[slot].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "member {slot} exited early with {status}; log:\n{}",
                    self.members[slot].log_tail(80)
                ));
            }
            if let Ok(mut c) = connect(self.url(slot), Duration::from_secs(3)).await
                && let Ok(resp) = c.get("readiness-probe").await
            {
                self.members[slot].id = resp.header.map_or(0, |h| h.member_id);
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "member {slot} did not become ready; log:\n{}",
                self.members[slot].log_tail(80)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Starts these members at once (none can be ready before a quorum runs), then waits
    /// until each is ready.
    async fn try_start_all(&mut self, slots: &[usize]) -> Result<(), String> {
        for &slot in slots {
            self.spawn(slot);
        }
        for &slot in slots {
            self.try_wait_ready(slot).await?;
        }
        Ok(())
    }

    /// SIGKILL: the process dies at once, without flushing anything.
    pub fn kill(&mut self, slot: usize) {
        if let Some(mut child) = self.members[slot].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.shared.pids.lock().unwrap()[slot] = None;
        self.shared.leaders.lock().unwrap().forget(slot);
    }

    /// SIGTERM, then waits for the exit: a clean stop, the backend committed.
    pub async fn terminate(&mut self, slot: usize) {
        self.signal(slot, "TERM");
        self.wait_exit(slot).await;
        self.shared.leaders.lock().unwrap().forget(slot);
    }

    /// Starts a killed member again on the same data dir and waits until it is ready.
    pub async fn restart(&mut self, slot: usize) {
        self.spawn(slot);
        self.wait_ready(slot).await;
    }

    /// Starts several killed members at once (none can be ready before a quorum runs), then
    /// waits until each is ready.
    pub async fn restart_all(&mut self, slots: &[usize]) {
        if let Err(e) = self.try_start_all(slots).await {
            panic!("{e}");
        }
    }

    pub fn sigstop(&self, slot: usize) {
        self.signal(slot, "STOP");
    }

    pub fn sigcont(&self, slot: usize) {
        self.signal(slot, "CONT");
    }

    fn signal(&self, slot: usize, signal: &str) {
        let pid = self.members[slot].pid().expect("member is running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Cuts the member off from every peer: its proxy drops every connection to it and
    /// refuses new ones, and the other proxies do the same for connections it opens.
    pub fn isolate(&self, slot: usize) {
        assert!(self.proxied, "partitions need a proxied cluster");
        let mut net = self.shared.net.lock().unwrap();
        net.isolated.insert(slot);
        net.cut_connections();
    }

    pub fn heal(&self, slot: usize) {
        self.shared.net.lock().unwrap().isolated.remove(&slot);
    }

    /// Peer connections the proxies attributed to a member, and those they could not (a
    /// connection closing while we look; cut during partitions, so no partition leaks).
    pub fn proxied_connections(&self) -> (u64, u64) {
        let net = self.shared.net.lock().unwrap();
        (net.identified, net.unidentified)
    }

    pub async fn status(&self, slot: usize) -> Result<StatusResponse, String> {
        status(self.url(slot)).await
    }

    /// Waits until every member in `among` answers Status and they all name the same leader,
    /// one of them; returns its slot.
    pub async fn wait_leader(&self, among: &[usize]) -> usize {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let mut reports = Vec::new();
            for &slot in among {
                reports.push(self.status(slot).await.map(|s| s.leader));
            }
            if let Some(Ok(leader)) = reports.first()
                && *leader != 0
                && reports.iter().all(|r| r.as_ref() == Ok(leader))
                && let Some(&slot) = among.iter().find(|s| self.members[**s].id == *leader)
            {
                return slot;
            }
            assert!(
                Instant::now() < deadline,
                "members {among:?} did not agree on a leader among them: {reports:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// MemberAdd of a new voting member, then starts it with `--initial-cluster-state
    /// existing` and waits until it is ready. Returns its slot.
    pub async fn add_member(&mut self) -> usize {
        let slot = self.new_slot().await;
        let peer_url = self.members[slot].peer_url.clone();
        let deadline = Instant::now() + WAIT_MAX;
        let id = loop {
            let via = self
                .live()
                .into_iter()
                .find(|s| *s != slot)
                .expect("a member");
            let attempt = async {
                let mut c = connect(self.url(via), Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())?;
                let added = c
                    .cluster
                    .member_add(MemberAddRequest {
                        peer_ur_ls: vec![peer_url.clone()],
                        is_learner: false,
                    })
                    .await;
                match added {
                    Ok(resp) => Ok(resp.into_inner().member.map_or(0, |m| m.id)),
                    // An earlier attempt that timed out may have been applied.
                    Err(e) => {
                        let list = c
                            .cluster
                            .member_list(MemberListRequest::default())
                            .await
                            .map_err(|e| e.message().to_string())?;
                        list.into_inner()
                            .members
                            .iter()
                            .find(|m| m.peer_ur_ls.contains(&peer_url))
                            .map(|m| m.id)
                            .ok_or_else(|| e.message().to_string())
                    }
                }
            };
            match attempt.await {
                Ok(id) => break id,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "MemberAdd {peer_url} failed: {e}"
                ),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let initial_cluster = self.initial_cluster();
        let m = &mut self.members[slot];
        m.initial_cluster = initial_cluster;
        m.existing = true;
        self.spawn(slot);
        self.wait_ready(slot).await;
        assert_eq!(self.members[slot].id, id, "the new member took another ID");
        slot
    }

    /// MemberRemove through another member, then waits until the removed member exits 0.
    pub async fn remove_member(&mut self, slot: usize) {
        self.remove_from_membership(slot).await;
        let exit = self.wait_exit(slot).await;
        assert!(
            exit.success(),
            "removed member {slot} exited with {exit}; log:\n{}",
            self.members[slot].log_tail(40)
        );
    }

    /// MemberRemove through another member; the member itself may be running or not.
    pub async fn remove_from_membership(&mut self, slot: usize) {
        let id = self.members[slot].id;
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let via = self
                .live()
                .into_iter()
                .find(|s| *s != slot)
                .expect("a member");
            let attempt = async {
                let mut c = connect(self.url(via), Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())?;
                match c.cluster.member_remove(MemberRemoveRequest { id }).await {
                    Ok(_) => Ok(()),
                    // An earlier attempt that timed out may have been applied.
                    Err(e) if e.message().contains("member not found") => Ok(()),
                    Err(e) => Err(e.message().to_string()),
                }
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) => assert!(Instant::now() < deadline, "MemberRemove {id:x} failed: {e}"),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        self.members[slot].removed = true;
        self.shared.endpoints.lock().unwrap()[slot] = None;
    }

    /// Waits until the member's process exits, and returns how.
    pub async fn wait_exit(&mut self, slot: usize) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT_MAX;
        let exit = loop {
            let child = self.members[slot]
                .child
                .as_mut()
                .expect("the member is running");
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "member {slot} did not exit; log:\n{}",
                self.members[slot].log_tail(40)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        self.members[slot].child = None;
        self.shared.pids.lock().unwrap()[slot] = None;
        exit
    }

    /// Starts `writers` client tasks writing distinct keys under `prefix`, spread over the
    /// members; each moves on to the next member when a write fails.
    pub fn start_load(&self, prefix: &str, writers: usize) -> Load {
        let load = Load {
            acked: Arc::default(),
            acks: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..writers)
            .map(|w| {
                tokio::spawn(write_loop(
                    w,
                    format!("{prefix}/w{w}"),
                    self.shared.clone(),
                    load.stop.clone(),
                    load.acked.clone(),
                    load.acks.clone(),
                ))
            })
            .collect();
        Load { tasks, ..load }
    }

    /// The final checks, once every fault is over and the load stopped: every member reaches
    /// the same revision R; every member has the same HashKV at R and the same keys under
    /// `prefix` at R, among them every acknowledged write with its revision; no two members
    /// ever named different leaders for one term.
    pub async fn check(&self, prefix: &str, acked: &BTreeMap<String, (String, i64)>) {
        let live = self.live();
        let max_acked = acked.values().map(|(_, r)| *r).max().unwrap_or(0);

        // Every member reaches the same revision.
        let deadline = Instant::now() + WAIT_MAX;
        let revision = loop {
            let mut revisions = Vec::new();
            for &slot in &live {
                revisions.push(
                    self.status(slot)
                        .await
                        .map(|s| s.header.map_or(0, |h| h.revision)),
                );
            }
            if let Ok(first) = &revisions[0]
                && *first >= max_acked
                && revisions.iter().all(|r| r.as_ref() == Ok(first))
            {
                break *first;
            }
            assert!(
                Instant::now() < deadline,
                "members {live:?} did not converge (revisions {revisions:?}, highest acknowledged {max_acked})"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        };

        let mut hashes = Vec::new();
        let mut contents: Vec<BTreeMap<String, (String, i64)>> = Vec::new();
        for &slot in &live {
            let mut c = self.client(slot, Duration::from_secs(10)).await;
            let hash = c
                .maintenance
                .hash_kv(HashKvRequest { revision })
                .await
                .unwrap_or_else(|e| panic!("HashKV on member {slot}: {e}"))
                .into_inner();
            assert_eq!(
                hash.hash_revision, revision,
                "member {slot} hashed another revision"
            );
            hashes.push(hash.hash);
            let key = prefix.as_bytes().to_vec();
            let range =
                c.kv.range(RangeRequest {
                    range_end: etcd_client::prefix_end(&key),
                    key,
                    revision,
                    serializable: true,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("range on member {slot}: {e}"))
                .into_inner();
            contents.push(
                range
                    .kvs
                    .iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&kv.key).into_owned(),
                            (
                                String::from_utf8_lossy(&kv.value).into_owned(),
                                kv.mod_revision,
                            ),
                        )
                    })
                    .collect(),
            );
        }
        for (i, &slot) in live.iter().enumerate() {
            for (key, (value, rev)) in acked {
                assert_eq!(
                    contents[i].get(key),
                    Some(&(value.clone(), *rev)),
                    "member {slot}: acknowledged write {key}={value} at revision {rev} lost or changed"
                );
            }
            assert!(
                contents[i] == contents[0],
                "members {slot} and {} hold different keys at revision {revision}",
                live[0]
            );
            assert_eq!(
                hashes[i], hashes[0],
                "members {slot} and {} differ in HashKV at revision {revision}",
                live[0]
            );
        }
        let mut revisions: Vec<i64> = contents[0].values().map(|(_, r)| *r).collect();
        revisions.sort_unstable();
        let distinct = revisions.len();
        revisions.dedup();
        assert_eq!(revisions.len(), distinct, "two writes share a revision");

        let leaders = self.shared.leaders.lock().unwrap();
        assert!(
            leaders.violations.is_empty(),
            "two leaders in one term: {:?}",
            leaders.violations
        );
        eprintln!(
            "checked: {} members at revision {revision}, {} acknowledged writes, {} terms with a leader, {} status samples",
            live.len(),
            acked.len(),
            leaders.leaders.len(),
            leaders.samples
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let panicking = std::thread::panicking();
        if panicking {
            for (slot, m) in self.members.iter().enumerate() {
                eprintln!(
                    "--- member {slot} ({}, id {:x}) log tail ---\n{}",
                    m.name,
                    m.id,
                    m.log_tail(60)
                );
            }
        }
        // KEEP_CLUSTER_DATA=1 keeps the data dirs and logs of a passing test too.
        if (panicking || std::env::var_os("KEEP_CLUSTER_DATA").is_some())
            && let Some(dir) = self.dir.take()
        {
            eprintln!("data dirs and logs kept in {}", dir.keep().display());
        }
    }
}

async fn status(url: &str) -> Result<StatusResponse, String> {
    let mut c = connect(url, STATUS_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(STATUS_TIMEOUT, c.maintenance.status(StatusRequest {})).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(e)) => Err(e.message().to_string()),
        Err(_) => Err("status timed out".to_string()),
    }
}

/// Polls the member's Status and records its (term, leader) pair, until the cluster drops.
async fn monitor(slot: usize, url: String, shared: Arc<Shared>) {
    let mut client = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = connect(&url, STATUS_TIMEOUT).await.ok();
        }
        if let Some(c) = client.as_mut() {
            let polled =
                tokio::time::timeout(STATUS_TIMEOUT, c.maintenance.status(StatusRequest {})).await;
            let mut leaders = shared.leaders.lock().unwrap();
            match polled {
                Ok(Ok(resp)) => leaders.record(slot, &resp.into_inner()),
                _ => leaders.forget(slot),
            }
        }
        tokio::time::sleep(MONITOR_INTERVAL).await;
    }
}

/// Acknowledged writes of a running load.
pub struct Load {
    /// key -> (value, revision) of every write a member acknowledged.
    acked: Arc<Mutex<BTreeMap<String, (String, i64)>>>,
    acks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn acks(&self) -> u64 {
        self.acks.load(Ordering::Relaxed)
    }

    /// Waits until `more` further writes are acknowledged: the cluster makes progress. Fails
    /// when no write at all is acknowledged for `WAIT_MAX` (a slow machine is not a failure).
    pub async fn wait_for_acks(&self, more: u64, what: &str) {
        let target = self.acks() + more;
        let mut last = (self.acks(), Instant::now());
        while self.acks() < target {
            let acks = self.acks();
            if acks != last.0 {
                last = (acks, Instant::now());
            }
            assert!(
                last.1.elapsed() < WAIT_MAX,
                "{what}: no write acknowledged for {WAIT_MAX:?} ({acks} of {target})"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops the writers and returns every acknowledged write.
    pub async fn stop(self) -> BTreeMap<String, (String, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("writer task");
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

async fn write_loop(
    writer: usize,
    prefix: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, (String, i64)>>>,
    acks: Arc<AtomicU64>,
) {
    let mut slot = writer;
    let mut client: Option<(usize, Client)> = None;
    for seq in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let endpoints = shared.endpoints.lock().unwrap().clone();
        slot %= endpoints.len();
        let Some(url) = endpoints[slot].clone() else {
            slot += 1;
            continue;
        };
        if client.as_ref().map(|(s, _)| *s) != Some(slot) {
            match connect(&url, WRITE_TIMEOUT).await {
                Ok(c) => client = Some((slot, c)),
                Err(_) => {
                    slot += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some((_, c)) = client.as_mut() else {
            continue;
        };
        let key = format!("{prefix}/{seq:06}");
        let value = format!("value-{writer}-{seq}");
        match c.put(key.clone(), value.clone()).await {
            Ok(resp) => {
                let revision = resp.header.expect("put has a header").revision;
                acked.lock().unwrap().insert(key, (value, revision));
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                // Not acknowledged: it may or may not be applied. Try another member.
                client = None;
                slot += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Forwards connections to one member's peer port, unless the network cuts them.
async fn run_proxy(listener: TcpListener, to: usize, target: String, shared: Arc<Shared>) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((inbound, from_addr)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let pids = shared.pids.lock().unwrap().clone();
            let from = match dialing_member(from_addr.port(), port, &pids) {
                Dialer::Member(slot) => {
                    shared.net.lock().unwrap().identified += 1;
                    Some(slot)
                }
                // The dialer closed its end already: nothing to forward.
                Dialer::Gone => return,
                Dialer::Unknown => {
                    shared.net.lock().unwrap().unidentified += 1;
                    None
                }
            };
            if shared.net.lock().unwrap().cuts(from, to) {
                return; // dropping `inbound` refuses the connection
            }
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let mut net = shared.net.lock().unwrap();
            // Checked again under the lock that `isolate` takes to cut connections.
            if net.cuts(from, to) {
                return;
            }
            let id = net.next_conn;
            net.next_conn += 1;
            let registry = shared.clone();
            let forward = tokio::spawn(async move {
                let (mut a, mut b) = (inbound, outbound);
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                registry.net.lock().unwrap().conns.remove(&id);
            });
            net.conns.insert(
                id,
                ProxiedConn {
                    from,
                    to,
                    abort: forward.abort_handle(),
                },
            );
        });
    }
}

enum Dialer {
    Member(usize),
    /// The dialing socket is closed or closing: it has no inode any more.
    Gone,
    /// A live socket that no member's process holds.
    Unknown,
}

/// The slot of the member whose process holds the loopback socket `client_port` connected to
/// `proxy_port`, found through `/proc/net/tcp` (socket inode) and `/proc/<pid>/fd`.
fn dialing_member(client_port: u16, proxy_port: u16, pids: &[Option<u32>]) -> Dialer {
    let Some(inode) = socket_inode(client_port, proxy_port) else {
        return Dialer::Gone;
    };
    let socket = format!("socket:[{inode}]");
    let holder = pids.iter().enumerate().find_map(|(slot, pid)| {
        let dir = std::fs::read_dir(format!("/proc/{}/fd", (*pid)?)).ok()?;
        dir.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == socket.as_str()))
            .then_some(slot)
    });
    match holder {
        Some(slot) => Dialer::Member(slot),
        // Closed while we looked through the processes' descriptors.
        None if socket_inode(client_port, proxy_port) != Some(inode) => Dialer::Gone,
        None => Dialer::Unknown,
    }
}

/// The inode of the live socket 127.0.0.1:`client_port` connected to 127.0.0.1:`proxy_port`,
/// from `/proc/net/tcp`; `None` when there is none (a closed socket shows inode 0).
fn socket_inode(client_port: u16, proxy_port: u16) -> Option<u64> {
    // /proc/net/tcp prints 127.0.0.1 as the little-endian hex of its network-order bytes.
    let local = format!("0100007F:{client_port:04X}");
    let remote = format!("0100007F:{proxy_port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()) {
                fields.get(9).and_then(|i| i.parse::<u64>().ok())
            } else {
                None
            }
        })
        .filter(|inode| *inode != 0)
}
