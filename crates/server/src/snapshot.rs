//! Raft snapshots carry the whole backend: a member too far behind (its entries were compacted
//! from the leader's log) receives a consistent copy of the leader's backend file with the
//! snapshot message, streamed in CRC-32C-checked chunks over the peer port.
//!
//! The backend copy may be newer than the snapshot's Raft index (the leader keeps applying
//! while it copies); that is safe because the receiver skips entries at or below the
//! backend's applied index, as etcd does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use etcd_api::internalpb::SnapshotChunk;
use etcd_api::internalpb::raft_peer_client::RaftPeerClient;
use etcd_mvcc::Store;
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::AsyncReadExt;
use tonic::Status;

/// Bytes of backend per chunk.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks in flight on one snapshot stream.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The backend file received with the latest snapshot message, waiting for Raft to hand the
/// snapshot to the apply path.
#[derive(Clone, Default)]
pub struct SnapshotInbox(Arc<Mutex<Option<(u64, PathBuf)>>>);

impl SnapshotInbox {
    pub fn put(&self, index: u64, path: PathBuf) {
        let previous = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace((index, path));
        if let Some((_, old)) = previous {
            let _ = std::fs::remove_file(old);
        }
    }

    /// The file received for the snapshot at `index`, if that is the one waiting.
    pub fn take(&self, index: u64) -> Option<PathBuf> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some((i, _)) if *i == index => slot.take().map(|(_, p)| p),
            _ => None,
        }
    }
}

/// Where snapshot files are staged: `<data-dir>/member/snap`.
pub fn staging_path(snap_dir: &Path, what: &str, peer: u64, index: u64) -> PathBuf {
    snap_dir.join(format!("{what}-{peer:016x}-{index:016x}.db.tmp"))
}

/// The backend file received from any peer for the snapshot at `index`, if one is staged.
pub fn staged_receipt(snap_dir: &Path, index: u64) -> Option<PathBuf> {
    let suffix = format!("-{index:016x}.db.tmp");
    std::fs::read_dir(snap_dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("recv-") && n.ends_with(&suffix))
        })
}

/// Sends `msg` (a MsgSnapshot) with a copy of our backend to its recipient. Returns whether
/// the peer took it, for `report_snapshot`.
pub async fn send(
    mut client: RaftPeerClient<tonic::transport::Channel>,
    store: Arc<Store>,
    snap_dir: PathBuf,
    cluster_id: u64,
    msg: Message,
) -> Result<(), String> {
    let (from, to, index) = (msg.from, msg.to, msg.get_snapshot().get_metadata().index);
    let path = staging_path(&snap_dir, "send", to, index);
    let copy_path = path.clone();
    let copy_store = store.clone();
    let applied = tokio::task::spawn_blocking(move || copy_store.snapshot_to(&copy_path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot copy the backend: {e}"))?;
    let message = msg.write_to_bytes().map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(CHUNKS_IN_FLIGHT);
    let reader_path = path.clone();
    let reader = tokio::spawn(async move {
        let mut file = tokio::fs::File::open(&reader_path)
            .await
            .map_err(|e| e.to_string())?;
        let mut crc = 0u32;
        let mut first = true;
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = read_full(&mut file, &mut buf)
                .await
                .map_err(|e| e.to_string())?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            let last = n < buf.len();
            let chunk = SnapshotChunk {
                cluster_id,
                from,
                to,
                message: if first { message.clone() } else { Vec::new() },
                data: buf[..n].to_vec(),
                crc32c: crc,
                last,
            };
            first = false;
            etcd_failpoints::point(etcd_failpoints::names::SNAPSHOT_DURING_SEND);
            if tx.send(chunk).await.is_err() {
                return Err("the peer closed the snapshot stream".to_string());
            }
            if last {
                return Ok::<(), String>(());
            }
        }
    });
    let result = client
        .snapshot(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let read_result = reader.await.map_err(|e| e.to_string()).and_then(|r| r);
    let _ = tokio::fs::remove_file(&path).await;
    result.map_err(|s| s.message().to_string())?;
    read_result?;
    tracing::info!(
        to = format!("{to:x}"),
        snapshot_index = index,
        backend_applied_index = applied,
        "sent snapshot"
    );
    Ok(())
}

async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Receives a snapshot stream: writes the backend to a staging file, checking each chunk's
/// running CRC, and returns the snapshot message once the file is complete and synced. A
/// stream that fails leaves no file behind.
pub async fn receive<S>(
    chunks: S,
    cluster_id: u64,
    member_id: u64,
    snap_dir: &Path,
    max_bytes: u64,
) -> Result<(Message, PathBuf), Status>
where
    S: futures::Stream<Item = Result<SnapshotChunk, Status>> + Unpin,
{
    let mut staged: Option<PathBuf> = None;
    let received = receive_into(
        chunks,
        cluster_id,
        member_id,
        snap_dir,
        max_bytes,
        &mut staged,
    )
    .await;
    if received.is_err()
        && let Some(path) = staged
    {
        let _ = std::fs::remove_file(path);
    }
    received
}

/// [`receive`], naming in `staged` the file it created as soon as it exists.
async fn receive_into<S>(
    mut chunks: S,
    cluster_id: u64,
    member_id: u64,
    snap_dir: &Path,
    max_bytes: u64,
    staged: &mut Option<PathBuf>,
) -> Result<(Message, PathBuf), Status>
where
    S: futures::Stream<Item = Result<SnapshotChunk, Status>> + Unpin,
{
    use futures::StreamExt as _;
    let mut message: Option<Message> = None;
    let mut file: Option<std::fs::File> = None;
    let mut crc = 0u32;
    let mut received: u64 = 0;
    while let Some(chunk) = chunks.next().await.transpose()? {
        if chunk.cluster_id != cluster_id || chunk.to != member_id {
            return Err(Status::failed_precondition(format!(
                "snapshot for cluster {:x} member {:x} sent to cluster {cluster_id:x} member {member_id:x}",
                chunk.cluster_id, chunk.to
            )));
        }
        if message.is_none() {
            let msg = Message::parse_from_bytes(&chunk.message)
                .map_err(|e| Status::invalid_argument(format!("bad snapshot message: {e}")))?;
            // Before anything is staged on disk: a lie must not cost us disk space either.
            crate::raft::guard::check_snapshot_stream(&msg, member_id)
                .map_err(|e| Status::invalid_argument(format!("bad snapshot message: {e}")))?;
            let index = msg.get_snapshot().get_metadata().index;
            let path = staging_path(snap_dir, "recv", chunk.from, index);
            let f = std::fs::File::create(&path)
                .map_err(|e| Status::internal(format!("cannot create {}: {e}", path.display())))?;
            *staged = Some(path);
            file = Some(f);
            message = Some(msg);
        }
        received += chunk.data.len() as u64;
        if received > max_bytes {
            return Err(Status::resource_exhausted(format!(
                "snapshot larger than {max_bytes} bytes"
            )));
        }
        crc = crc32c::crc32c_append(crc, &chunk.data);
        if crc != chunk.crc32c {
            return Err(Status::data_loss("snapshot chunk checksum mismatch"));
        }
        let (Some(f), Some(path)) = (file.as_mut(), staged.as_ref()) else {
            return Err(Status::internal("no staging file"));
        };
        f.write_all(&chunk.data)
            .map_err(|e| Status::internal(format!("cannot write {}: {e}", path.display())))?;
        if chunk.last {
            f.sync_all()
                .map_err(|e| Status::internal(format!("cannot sync {}: {e}", path.display())))?;
            // The file's name too: a restart may have to finish the restore from it.
            std::fs::File::open(snap_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| {
                    Status::internal(format!("cannot sync {}: {e}", snap_dir.display()))
                })?;
            let path = staged
                .take()
                .ok_or_else(|| Status::internal("no staging file"))?;
            let msg = message
                .take()
                .ok_or_else(|| Status::internal("no message"))?;
            return Ok((msg, path));
        }
    }
    Err(Status::aborted(
        "snapshot stream ended before its last chunk",
    ))
}
