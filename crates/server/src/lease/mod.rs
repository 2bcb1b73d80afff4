//! Leases: the replicated lessor state, its persistence in the backend, and the leader's
//! expiry loop. The gRPC service is `grpc/lease.rs`.

mod lessor;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest, RangeRequest};
use etcd_api::internalpb::internal_request::Request;
use etcd_mvcc::Store;
use prost::Message as _;

pub use lessor::{LeaseError, Lessor, MAX_LEASE_TTL_SECS};

use crate::error::ServerError;
use crate::server::EtcdServer;

/// The lessor is read by gRPC tasks and written by the apply path and the expiry loop; every
/// hold is a few map operations.
#[derive(Clone, Default)]
pub struct SharedLessor(Arc<Mutex<Lessor>>);

impl SharedLessor {
    pub fn new(lessor: Lessor) -> SharedLessor {
        SharedLessor(Arc::new(Mutex::new(lessor)))
    }

    pub fn lock(&self) -> MutexGuard<'_, Lessor> {
        // Every Lessor method leaves it consistent even if the caller panics mid-way.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Backend meta keys holding one granted lease each.
pub const LEASE_META_PREFIX: &str = "lease/";

pub fn meta_key(id: i64) -> String {
    format!("{LEASE_META_PREFIX}{:016x}", id as u64)
}

pub fn encode_meta(id: i64, ttl_secs: i64) -> Vec<u8> {
    LeaseGrantRequest { ttl: ttl_secs, id }.encode_to_vec()
}

/// Rebuilds the lessor at start: leases from the backend, attachments from the keys' lease
/// fields (etcd does not persist attachments either). The store found those fields while it
/// rebuilt its index; reading every record again (the fallback) would hold the whole keyspace
/// in memory at once on a restart.
pub fn load(store: &Store, lessor: &mut Lessor) -> Result<(), ServerError> {
    for (key, value) in store.meta_range(LEASE_META_PREFIX)? {
        let lease = LeaseGrantRequest::decode(value.as_slice()).map_err(|e| {
            ServerError::Internal(format!("backend: cannot decode lease {key}: {e}"))
        })?;
        lessor.restore(lease.id, lease.ttl);
    }
    let leased = store.take_leased_keys_at_load();
    if lessor.is_empty() {
        return Ok(());
    }
    if let Some(leased) = leased {
        for (key, lease) in leased {
            lessor.attach(lease, &key);
        }
        return Ok(());
    }
    let all = store.range(&RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    })?;
    for kv in all.kvs.iter().filter(|kv| kv.lease != 0) {
        lessor.attach(kv.lease, &kv.key);
    }
    Ok(())
}

/// How often the leader looks for expired leases, and how many it revokes per look: 1,000 a
/// second, etcd's revoke rate, but in tenths of a second rather than etcd's halves, so a mass
/// expiry reaches Raft as a steady stream instead of bursts of 500 proposals.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(100);
const REVOKES_PER_CHECK_MAX: usize = 100;
/// When a lease handed out for revoking is handed out again if it still exists (its revoke was
/// lost, say to a leader change): etcd's `expiredLeaseRetryInterval`.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

/// Runs for the life of the member: on the leader, proposes a revoke for each expired lease.
/// The revoke goes through Raft like any write, so every member deletes the same keys at the
/// same revision.
pub async fn run_expiry(server: Arc<EtcdServer>) {
    let mut ticker = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let expired =
            server
                .lessor
                .lock()
                .take_expired(Instant::now(), REVOKES_PER_CHECK_MAX, REVOKE_RETRY);
        for id in expired {
            let server = server.clone();
            tokio::spawn(async move {
                let req = Request::LeaseRevoke(LeaseRevokeRequest { id });
                match server.propose(req).await {
                    Ok(_) | Err(ServerError::LeaseNotFound) => {
                        tracing::debug!(lease = format!("{id:x}"), "revoked expired lease")
                    }
                    Err(e) => tracing::warn!(
                        lease = format!("{id:x}"),
                        error = %e,
                        "failed to revoke an expired lease; will retry"
                    ),
                }
            });
        }
    }
}
