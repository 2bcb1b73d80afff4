//! Partitions on peer traffic: each member advertises a proxy port as its peer URL, and the
//! proxy pipes connections to the member's real peer port, unless the network says the pair
//! is cut. The proxy tells who dials from the first bytes: the hello of our Raft links
//! (magic, version, cluster, sender, receiver) or the `X-Server-From` header etcd's rafthttp
//! sends. A connection whose sender it cannot tell is cut whenever any partition is on
//! (better a member too isolated than a partition that leaks). Client traffic is not proxied:
//! clients still reach an isolated member, which must then not answer linearizable reads.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const LINK_MAGIC: &[u8] = b"\0RAFT";
/// Where the sender's ID starts in our link hello: magic, version, cluster ID.
const HELLO_FROM_AT: usize = LINK_MAGIC.len() + 1 + 8;
/// Bytes read from a new connection to tell its sender, at most.
const PEEK_MAX: usize = 8192;

#[derive(Default)]
struct State {
    /// Members cut off both ways.
    isolated: HashSet<usize>,
    /// Members that receive nothing but can still send.
    deaf: HashSet<usize>,
    /// Member ID to slot.
    ids: HashMap<u64, usize>,
    conns: HashMap<u64, (Option<usize>, usize, AbortHandle)>,
    next_conn: u64,
}

impl State {
    fn cuts(&self, from: Option<usize>, to: usize) -> bool {
        if self.isolated.contains(&to) || self.deaf.contains(&to) {
            return true;
        }
        match from {
            Some(from) => self.isolated.contains(&from),
            None => !self.isolated.is_empty(),
        }
    }

    fn cut_connections(&mut self) {
        let cut: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, (from, to, _))| self.cuts(*from, *to))
            .map(|(id, _)| *id)
            .collect();
        for id in cut {
            if let Some((_, _, abort)) = self.conns.remove(&id) {
                abort.abort();
            }
        }
    }
}

#[derive(Clone, Default)]
pub struct Network(Arc<Mutex<State>>);

impl Network {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns which member ID is which slot (from the member list, once the cluster is up).
    pub fn learn(&self, ids: HashMap<u64, usize>) {
        self.state().ids = ids;
    }

    /// Learns one more member ID (a member replaced under a new ID).
    pub fn learn_one(&self, id: u64, slot: usize) {
        self.state().ids.insert(id, slot);
    }

    pub fn isolate(&self, slot: usize) {
        let mut st = self.state();
        st.isolated.insert(slot);
        st.cut_connections();
    }

    /// Cuts everything sent to `slot`; what it sends still arrives.
    pub fn deafen(&self, slot: usize) {
        let mut st = self.state();
        st.deaf.insert(slot);
        st.cut_connections();
    }

    pub fn heal(&self) {
        let mut st = self.state();
        st.isolated.clear();
        st.deaf.clear();
    }

    /// Serves the proxy of member `to` on `listener`, piping to `target_port`.
    pub async fn serve(self, listener: TcpListener, to: usize, target_port: u16) {
        while let Ok((inbound, _)) = listener.accept().await {
            let net = self.clone();
            tokio::spawn(async move { net.pipe(inbound, to, target_port).await });
        }
    }

    async fn pipe(self, mut inbound: TcpStream, to: usize, target_port: u16) {
        let mut first = vec![0u8; PEEK_MAX];
        let mut len = 0;
        let mut sender = None;
        for _ in 0..4 {
            let read =
                tokio::time::timeout(Duration::from_millis(300), inbound.read(&mut first[len..]))
                    .await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => len += n,
                Err(_) => break,
            }
            sender = sender_id(&first[..len]);
            if sender.is_some() || len == PEEK_MAX {
                break;
            }
        }
        first.truncate(len);
        let (from, conn_id) = {
            let mut st = self.state();
            let from = sender.and_then(|id| st.ids.get(&id).copied());
            if st.cuts(from, to) {
                return;
            }
            st.next_conn += 1;
            (from, st.next_conn)
        };
        let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
            return;
        };
        let net = self.clone();
        let task = tokio::spawn(async move {
            if outbound.write_all(&first).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
            net.state().conns.remove(&conn_id);
        });
        let mut st = self.state();
        if st.cuts(from, to) {
            task.abort();
        } else if !task.is_finished() {
            st.conns.insert(conn_id, (from, to, task.abort_handle()));
        }
    }
}

/// The member ID a peer connection's first bytes name as sender, if they do.
fn sender_id(first: &[u8]) -> Option<u64> {
    if first.starts_with(LINK_MAGIC) {
        let id = first.get(HELLO_FROM_AT..HELLO_FROM_AT + 8)?;
        return Some(u64::from_be_bytes(id.try_into().ok()?));
    }
    let text = std::str::from_utf8(first).ok()?;
    let header_end = text.find("\r\n\r\n").unwrap_or(text.len());
    text[..header_end].lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("x-server-from")
            .then(|| u64::from_str_radix(value.trim(), 16).ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_told_from_our_hello_and_etcds_header() {
        let mut hello = LINK_MAGIC.to_vec();
        hello.push(1);
        hello.extend_from_slice(&7u64.to_be_bytes());
        hello.extend_from_slice(&0xabcu64.to_be_bytes());
        hello.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(sender_id(&hello), Some(0xabc));
        let http = b"GET /raft/stream/msgappv2/1 HTTP/1.1\r\nHost: x\r\nX-Server-From: 8e9e05c52164694d\r\n\r\n";
        assert_eq!(sender_id(http), Some(0x8e9e05c52164694d));
        assert_eq!(sender_id(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        assert_eq!(sender_id(&hello[..10]), None);
    }

    #[test]
    fn cuts_follow_the_partition() {
        let mut st = State::default();
        assert!(!st.cuts(Some(0), 1));
        st.isolated.insert(1);
        assert!(st.cuts(Some(0), 1));
        assert!(st.cuts(Some(1), 0));
        assert!(!st.cuts(Some(0), 2));
        assert!(st.cuts(None, 2));
        st.isolated.clear();
        st.deaf.insert(2);
        assert!(st.cuts(Some(0), 2));
        assert!(!st.cuts(Some(2), 0));
    }
}
