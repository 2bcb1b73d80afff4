//! Forged Raft messages on the peer port (no peer TLS, so anyone may claim a member's name):
//! the messages that crash raft-rs, and every message type with its numbers at the extremes,
//! over a real link and over the snapshot stream. Every member must stay up and healthy and
//! lose no acknowledged write.
//!
//! The lies are told in names that keep the cluster's story straight (the leader's to a
//! follower, a follower's to the leader, in the current term): a lie that names a second
//! leader for a term is one Raft cannot tell from the truth, and the harness's check of one
//! leader per term would rightly fail on it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::cluster::{Cluster, ClusterOptions};
use common::pki::Pki;
use etcd_api::etcdserverpb::{MemberListRequest, StatusRequest};
use etcd_api::internalpb::SnapshotChunk;
use etcd_api::internalpb::raft_peer_client::RaftPeerClient;
use etcd_server::raft::links::{LINK_MAGIC, LINK_VERSION, encode_frame};
use protobuf::Message as _;
use raft::prelude::{Entry, Message, MessageType};

const PREFIX: &str = "lies";

const ALL_TYPES: [MessageType; 19] = [
    MessageType::MsgHup,
    MessageType::MsgBeat,
    MessageType::MsgPropose,
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestVoteResponse,
    MessageType::MsgSnapshot,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgUnreachable,
    MessageType::MsgSnapStatus,
    MessageType::MsgCheckQuorum,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
    MessageType::MsgReadIndexResp,
    MessageType::MsgRequestPreVote,
    MessageType::MsgRequestPreVoteResponse,
];

fn message(kind: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

/// The lies told to member `to` in member `from`'s name, in `term`, when `to`'s log ends
/// near `last_index`.
fn lies(from: u64, to: u64, term: u64, last_index: u64) -> Vec<Message> {
    let mut out = Vec::new();
    // The two that crashed members before: a heartbeat committing past the log, and a
    // read-index request without its context entry.
    let mut heartbeat = message(MessageType::MsgHeartbeat, from, to, term);
    heartbeat.commit = last_index + 1000;
    out.push(heartbeat);
    out.push(message(MessageType::MsgReadIndex, from, to, term));
    // A request for a snapshot past the log, which no member of ours ever makes.
    let mut wants_snapshot = message(MessageType::MsgAppendResponse, from, to, term);
    wants_snapshot.reject = true;
    wants_snapshot.request_snapshot = last_index + 1000;
    out.push(wants_snapshot);
    // Every type, its numbers at zero, at the maximum and beyond the log, with no entry and
    // with one.
    for kind in ALL_TYPES {
        for n in [0, u64::MAX, last_index + 1000] {
            for entries in [0, 1] {
                let mut m = message(kind, from, to, term);
                m.index = n;
                m.log_term = n;
                m.commit = n;
                m.reject_hint = n;
                for i in 0..entries {
                    m.mut_entries().push(Entry {
                        index: n.wrapping_add(1 + i),
                        term: n,
                        data: vec![0xff; 3].into(),
                        ..Entry::default()
                    });
                }
                out.push(m);
            }
        }
    }
    out
}

/// Opens a Raft link to the member at `peer_url` in `from`'s name; `Err` with the refusal.
fn open_link(peer_url: &str, cluster_id: u64, from: u64, to: u64) -> Result<TcpStream, String> {
    let address = peer_url.trim_start_matches("http://");
    let mut s = TcpStream::connect(address).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = LINK_MAGIC.to_vec();
    hello.push(LINK_VERSION);
    for word in [cluster_id, from, to] {
        hello.extend_from_slice(&word.to_be_bytes());
    }
    s.write_all(&hello).map_err(|e| e.to_string())?;
    let mut verdict = [0u8; 1];
    s.read_exact(&mut verdict).map_err(|e| e.to_string())?;
    if verdict[0] == 0 {
        return Ok(s);
    }
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut reason = vec![0; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reason).map_err(|e| e.to_string())?;
    Err(String::from_utf8_lossy(&reason).into_owned())
}

fn tell(link: &mut TcpStream, lies: &[Message]) {
    let mut frames = Vec::new();
    for lie in lies {
        encode_frame(lie, &mut frames).expect("encodes");
    }
    link.write_all(&frames).expect("the member reads our lies");
    link.flush().unwrap();
}

/// A snapshot stream whose message is `msg`, with a few bytes of "backend".
async fn send_snapshot_stream(
    peer_url: &str,
    cluster_id: u64,
    msg: &Message,
) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(peer_url.to_string())
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let data = b"not a backend".to_vec();
    let chunk = SnapshotChunk {
        cluster_id,
        from: msg.from,
        to: msg.to,
        message: msg.write_to_bytes().unwrap(),
        crc32c: crc32c_of(&data),
        data,
        last: true,
    };
    RaftPeerClient::new(channel)
        .snapshot(tokio_stream::iter(vec![chunk]))
        .await
        .map(|_| ())
}

/// CRC-32C (Castagnoli), bit by bit: the snapshot stream's running checksum.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

struct Facts {
    cluster_id: u64,
    term: u64,
    last_index: u64,
}

async fn facts(cluster: &Cluster, slot: usize) -> Facts {
    let mut c = cluster.client(slot, Duration::from_secs(5)).await;
    let list = c
        .cluster
        .member_list(MemberListRequest::default())
        .await
        .unwrap()
        .into_inner();
    let status = c
        .maintenance
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    Facts {
        cluster_id: list.header.unwrap().cluster_id,
        term: status.raft_term,
        last_index: status.raft_index,
    }
}

/// Every snapshot-stream lie is refused before the member takes it.
async fn snapshot_stream_lies_are_refused(cluster: &Cluster, target: usize, from: u64) {
    let f = facts(cluster, target).await;
    let to = cluster.members[target].id;
    let url = &cluster.members[target].listen_peer_url;
    let mut not_a_snapshot = message(MessageType::MsgHeartbeat, from, to, f.term);
    not_a_snapshot.commit = f.last_index + 1000;
    let mut empty_snapshot = message(MessageType::MsgSnapshot, from, to, f.term);
    empty_snapshot.mut_snapshot().mut_metadata().index = 0;
    let mut future_snapshot = message(MessageType::MsgSnapshot, from, to, f.term);
    future_snapshot.mut_snapshot().mut_metadata().index = u64::MAX;
    future_snapshot.mut_snapshot().mut_metadata().term = u64::MAX;
    for lie in [not_a_snapshot, empty_snapshot, future_snapshot] {
        let refused = send_snapshot_stream(url, f.cluster_id, &lie)
            .await
            .expect_err("a lying snapshot stream is refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_lies_on_links_and_snapshot_streams() {
    let cluster = Cluster::start(ClusterOptions::new(3)).await;
    let load = cluster.start_load(PREFIX, 2);
    load.wait_for_acks(40, "before the lies").await;
    let leader = cluster.wait_leader(&[0, 1, 2]).await;
    let leader_id = cluster.members[leader].id;
    let follower = (leader + 1) % 3;
    let follower_id = cluster.members[follower].id;

    // To a follower in the leader's name, and to the leader in a follower's name.
    for (target, from) in [(follower, leader_id), (leader, follower_id)] {
        let f = facts(&cluster, target).await;
        let to = cluster.members[target].id;
        let url = cluster.members[target].listen_peer_url.clone();
        let mut link = open_link(&url, f.cluster_id, from, to).expect("the link opens");
        tell(&mut link, &lies(from, to, f.term, f.last_index));
        drop(link);
        load.wait_for_acks(40, "after the lies").await;
        snapshot_stream_lies_are_refused(&cluster, target, from).await;
    }

    load.wait_for_acks(40, "at the end").await;
    let acked = load.stop().await;
    cluster.check(PREFIX, &acked).await;
    for (slot, m) in cluster.members.iter().enumerate() {
        let log = m.log();
        assert!(!log.contains("panicked"), "member {slot} panicked:\n{log}");
    }
    for target in [follower, leader] {
        let log = cluster.members[target].log();
        assert!(
            log.contains("that breaks Raft's rules"),
            "member {target} reported no refused lie:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_member_refuses_links_from_strangers_and_lying_snapshots() {
    let cluster = Cluster::start(ClusterOptions::new(1)).await;
    let load = cluster.start_load(PREFIX, 1);
    load.wait_for_acks(20, "before the lies").await;
    let f = facts(&cluster, 0).await;
    let me = cluster.members[0].id;
    let stranger = me ^ 0x5a5a;
    let url = cluster.members[0].listen_peer_url.clone();
    // No other member exists: a link in any name is refused, and nothing is read from it.
    if let Ok(mut link) = open_link(&url, f.cluster_id, stranger, me) {
        // Accepted at the hello, dropped by the Raft thread: the lies must still do nothing.
        let _ = link.write_all(&{
            let mut frames = Vec::new();
            for lie in lies(stranger, me, f.term, f.last_index) {
                encode_frame(&lie, &mut frames).unwrap();
            }
            frames
        });
    }
    snapshot_stream_lies_are_refused(&cluster, 0, stranger).await;
    load.wait_for_acks(20, "after the lies").await;
    let acked = load.stop().await;
    cluster.check(PREFIX, &acked).await;
}

/// Opens a TLS link from 127.0.0.1 to `address` with this certificate and says hello in
/// `from`'s name: the verdict, `Err` with the refusal.
async fn tls_hello(
    address: std::net::SocketAddr,
    pki: &Pki,
    cert: &(std::path::PathBuf, std::path::PathBuf),
    cluster_id: u64,
    from: u64,
    to: u64,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let info = etcd_transport::TlsInfo {
        cert_file: Some(cert.0.clone()),
        key_file: Some(cert.1.clone()),
        trusted_ca_file: Some(pki.ca()),
        ..etcd_transport::TlsInfo::default()
    };
    let config = info.client_config(&[]).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(address).await.map_err(|e| e.to_string())?;
    let name = info.server_name_for(&address.ip().to_string()).unwrap();
    let mut tls = etcd_transport::tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut hello = LINK_MAGIC.to_vec();
    hello.push(LINK_VERSION);
    for word in [cluster_id, from, to] {
        hello.extend_from_slice(&word.to_be_bytes());
    }
    tls.write_all(&hello).await.map_err(|e| e.to_string())?;
    let mut verdict = [0u8; 1];
    tls.read_exact(&mut verdict)
        .await
        .map_err(|e| e.to_string())?;
    if verdict[0] == 0 {
        return Ok(());
    }
    let mut len = [0u8; 2];
    tls.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let mut reason = vec![0; u16::from_be_bytes(len) as usize];
    tls.read_exact(&mut reason)
        .await
        .map_err(|e| e.to_string())?;
    Err(String::from_utf8_lossy(&reason).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_speaks_only_for_its_own_member() {
    // Two members on two loopback addresses; member b's certificate also names 127.0.0.1,
    // the address its connections leave from, for the transport's address check.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let a_cert = pki.issue("a", &["127.0.0.1"]);
    let b_cert = pki.issue("b", &["127.0.0.2", "127.0.0.1"]);
    let stranger_cert = pki.issue("stranger", &["127.0.0.1"]);
    let port = common::cluster::cluster_port;
    let (a_peer, b_peer) = (
        format!("https://127.0.0.1:{}", port()),
        format!("https://127.0.0.2:{}", port()),
    );
    let initial_cluster = format!("a={a_peer},b={b_peer}");
    let mut members = Vec::new();
    for (name, peer, cert) in [("a", &a_peer, &a_cert), ("b", &b_peer, &b_cert)] {
        let client = format!("http://127.0.0.1:{}", port());
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(["--name", name, "--data-dir"])
            .arg(dir.path().join(format!("{name}.etcd")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
            ])
            .args(["--initial-cluster", &initial_cluster])
            .arg("--peer-cert-file")
            .arg(&cert.0)
            .arg("--peer-key-file")
            .arg(&cert.1)
            .arg("--peer-trusted-ca-file")
            .arg(pki.ca())
            .arg("--peer-client-cert-auth")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        members.push((KillOnDrop(child), client));
    }
    // Both serve once they elected a leader over their TLS links.
    let mut ids = Vec::new();
    let mut cluster_id = 0;
    for (_, client) in &members {
        let mut attempts = 0;
        let resp = loop {
            let answer = match common::cluster::connect(client, Duration::from_secs(5)).await {
                Ok(mut c) => c.get("ready").await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(resp) => break resp,
                Err(_) if attempts < 200 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!(
                    "member at {client} never served: {e}\n{}",
                    std::fs::read_to_string(dir.path().join("a.log")).unwrap_or_default()
                ),
            }
        };
        let header = resp.header.unwrap();
        ids.push(header.member_id);
        cluster_id = header.cluster_id;
    }
    let (a_id, b_id) = (ids[0], ids[1]);
    let a_address: std::net::SocketAddr = a_peer.trim_start_matches("https://").parse().unwrap();

    // The stranger's certificate is valid for 127.0.0.1, where it connects from, but member
    // b's peer URL is at 127.0.0.2.
    let refused = tls_hello(a_address, &pki, &stranger_cert, cluster_id, b_id, a_id)
        .await
        .expect_err("a certificate for another host cannot speak for member b");
    assert!(
        refused.starts_with("x509: certificate is valid for 127.0.0.1, not 127.0.0.2"),
        "{refused}"
    );
    // Member b's own certificate may.
    tls_hello(a_address, &pki, &b_cert, cluster_id, b_id, a_id)
        .await
        .expect("member b's certificate speaks for member b");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
