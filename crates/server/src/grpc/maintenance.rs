//! The Maintenance service: Status, Alarm, Defragment, Hash, HashKV, Snapshot, MoveLeader.

use std::sync::Arc;

use etcd_api::etcdserverpb::maintenance_server::Maintenance;
use etcd_api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use etcd_api::internalpb::internal_request::Request;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Response, Status};

use super::access;
use super::kv::unexpected;
use crate::apply::ApplyResponse;
use crate::config::SERVER_VERSION;
use crate::error::ServerError;
use crate::server::EtcdServer;

/// Snapshot chunks (32 KiB each) read ahead of a slow client: the file waits on disk.
const SNAPSHOT_CHUNKS_BUFFERED: usize = 16;

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: tonic::Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let applied = self
            .server
            .propose(Request::Alarm(request.into_inner()))
            .await?;
        match applied.response {
            // etcd's alarm answers carry no header.
            ApplyResponse::Alarm(alarms) => Ok(Response::new(AlarmResponse {
                header: None,
                alarms,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn status(
        &self,
        _request: tonic::Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let s = &self.server;
        let mut errors = Vec::new();
        if s.leader() == 0 {
            errors.push(ServerError::NoLeader.to_string());
        }
        errors.extend(s.cluster_state().alarms.iter().map(alarm_text));
        Ok(Response::new(StatusResponse {
            header: s.current_header(),
            version: SERVER_VERSION.to_string(),
            db_size: s.store.db_size_bytes() as i64,
            leader: s.leader(),
            raft_index: s.commit_index(),
            raft_term: s.term(),
            raft_applied_index: s.applied_index(),
            errors,
            db_size_in_use: s.store.db_size_in_use_bytes() as i64,
            is_learner: s.is_learner(),
        }))
    }

    /// etcd's backup: the backend as a bbolt file, then its SHA-256, in chunks. The file is
    /// written beside the backend from one consistent view, streamed, and removed.
    async fn snapshot(
        &self,
        request: tonic::Request<SnapshotRequest>,
    ) -> Result<Response<BoxStream<SnapshotResponse>>, Status> {
        // etcd lets only admins (the root role) do this once auth is on.
        access::require_admin(&self.server, &(&request).into())?;
        let store = self.server.store.clone();
        let snap_dir = self
            .server
            .cfg
            .backend_path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let (tx, rx) = mpsc::channel(SNAPSHOT_CHUNKS_BUFFERED);
        tokio::task::spawn_blocking(move || {
            let path = crate::backup::staging_path(&snap_dir);
            let outcome = crate::backup::write_bbolt(&store, &path).and_then(|size| {
                tracing::info!(size_bytes = size, "sending database snapshot to client");
                crate::backup::stream_file(&path, |remaining_bytes, blob| {
                    let chunk = SnapshotResponse {
                        header: None,
                        remaining_bytes,
                        blob,
                        // etcd 3.5's storage version; 3.4 sends none.
                        version: String::new(),
                    };
                    tx.blocking_send(Ok(chunk)).is_ok()
                })
            });
            let _ = std::fs::remove_file(&path);
            if let Err(e) = outcome {
                tracing::warn!(
                    error = %e,
                    hint = "the client may ask again; if it repeats, check the disk space of \
                            the data dir, which holds the snapshot while it is sent",
                    "failed to send database snapshot"
                );
                let _ = tx.blocking_send(Err(Status::from(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        request: tonic::Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        self.server.move_leader(target).await?;
        Ok(Response::new(MoveLeaderResponse {
            header: self.server.current_header(),
        }))
    }

    async fn defragment(
        &self,
        request: tonic::Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        // etcd lets only admins (the root role) do this once auth is on.
        access::require_admin(&self.server, &(&request).into())?;
        let store = self.server.store.clone();
        tokio::task::spawn_blocking(move || store.defragment())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(ServerError::from)?;
        Ok(Response::new(DefragmentResponse {
            header: self.server.current_header(),
        }))
    }

    async fn hash(
        &self,
        request: tonic::Request<HashRequest>,
    ) -> Result<Response<HashResponse>, Status> {
        // etcd lets only admins (the root role) do this once auth is on.
        access::require_admin(&self.server, &(&request).into())?;
        let store = self.server.store.clone();
        let hash = tokio::task::spawn_blocking(move || store.hash())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(ServerError::from)?;
        Ok(Response::new(HashResponse {
            header: self.server.current_header(),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: tonic::Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        // etcd lets only admins (the root role) do this once auth is on.
        access::require_admin(&self.server, &(&request).into())?;
        let revision = request.into_inner().revision;
        let store = self.server.store.clone();
        let kv_hash = tokio::task::spawn_blocking(move || store.hash_kv(revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(ServerError::from)?;
        Ok(Response::new(HashKvResponse {
            header: self.server.header(kv_hash.current_revision),
            hash: kv_hash.hash,
            compact_revision: kv_hash.compact_revision,
            hash_revision: kv_hash.hash_revision,
        }))
    }
}

/// An alarm as etcd's Status lists it in `errors`: the Go protobuf compact text of the
/// `AlarmMember` (`memberID:<decimal> alarm:NOSPACE `), each set field followed by a space.
fn alarm_text(alarm: &AlarmMember) -> String {
    let mut text = String::new();
    if alarm.member_id != 0 {
        text.push_str(&format!("memberID:{} ", alarm.member_id));
    }
    if alarm.alarm != 0 {
        match AlarmType::try_from(alarm.alarm) {
            Ok(kind) => text.push_str(&format!("alarm:{} ", kind.as_str_name())),
            Err(_) => text.push_str(&format!("alarm:{} ", alarm.alarm)),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_text_is_gos_compact_protobuf_text() {
        let nospace = AlarmMember {
            member_id: 2185233399518806002,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(
            alarm_text(&nospace),
            "memberID:2185233399518806002 alarm:NOSPACE "
        );
        let corrupt = AlarmMember {
            member_id: 1,
            alarm: AlarmType::Corrupt as i32,
        };
        assert_eq!(alarm_text(&corrupt), "memberID:1 alarm:CORRUPT ");
        assert_eq!(alarm_text(&AlarmMember::default()), "");
    }
}
