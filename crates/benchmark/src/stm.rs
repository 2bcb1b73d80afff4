//! `stm`: software transactional memory transactions as etcd's `clientv3/concurrency` STM
//! runs them, one per request: read each key of the transaction, then commit the writes in
//! one txn guarded by compares that the isolation level asks for; on conflict, start over.
//!
//! - `c` (read committed): no compares.
//! - `r` (repeatable reads): each key read is unchanged since its read.
//! - `s` (serializable): reads after the first are at the first read's revision; each key
//!   read is unchanged since that revision.
//! - `ss` (serializable snapshot): as `s`, and the written keys too.

use std::collections::HashSet;

use etcd_api::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
};
use etcd_client::Client;
use rand::Rng;

use crate::keys::{put_varint, random_bytes};

/// Key size of the STM benchmark's keys, as etcd's.
const STM_KEY_SIZE: usize = 16;
/// Attempts of one transaction before it is reported as failed, so contention cannot keep a
/// client retrying forever.
const STM_ATTEMPTS_MAX: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    RepeatableReads,
    Serializable,
    SerializableSnapshot,
}

impl Isolation {
    pub fn parse(flag: &str) -> Option<Isolation> {
        match flag {
            "c" => Some(Isolation::ReadCommitted),
            "r" => Some(Isolation::RepeatableReads),
            "s" => Some(Isolation::Serializable),
            "ss" => Some(Isolation::SerializableSnapshot),
            _ => None,
        }
    }
}

/// One STM transaction: read `keys`, write new values to the first `writes.len()` of them;
/// inside the lock `locker` takes.
pub struct StmTxn {
    pub isolation: Isolation,
    pub keys: Vec<Vec<u8>>,
    pub writes: Vec<Vec<u8>>,
    pub locker: Locker,
}

/// What wraps each transaction (`--stm-locker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locker {
    /// Nothing: the STM's own conflict checks.
    Stm,
    /// The client-side mutex recipe (`mutex.rs`) on the `stmlock/` prefix.
    LockClient,
    /// The Lock service's `stmlock` lock.
    LockRpc,
}

impl Locker {
    pub fn parse(flag: &str) -> Option<Locker> {
        match flag {
            "stm" => Some(Locker::Stm),
            "lock-client" => Some(Locker::LockClient),
            "lock-rpc" => Some(Locker::LockRpc),
            _ => None,
        }
    }

    /// Whether the client needs a session lease.
    pub fn needs_session(self) -> bool {
        self != Locker::Stm
    }
}

/// Name of the lock `--stm-locker lock-rpc` takes around each transaction, as etcd's.
pub const STM_LOCK_NAME: &[u8] = b"stmlock";

/// Runs the transaction inside the lock its locker asks for, held with the session `lease`.
pub async fn run_locked(
    client: &mut Client,
    lease: i64,
    txn: &StmTxn,
) -> Result<(), tonic::Status> {
    use etcd_api::v3lockpb::{LockRequest, UnlockRequest};
    match txn.locker {
        Locker::Stm => run_txn(client, txn).await,
        Locker::LockRpc => {
            let lock = LockRequest {
                name: STM_LOCK_NAME.to_vec(),
                lease,
            };
            let key = client.lock.lock(lock).await?.into_inner().key;
            let result = run_txn(client, txn).await;
            client.lock.unlock(UnlockRequest { key }).await?;
            result
        }
        Locker::LockClient => {
            let key = crate::mutex::lock(client, b"stmlock/", lease).await?;
            let result = run_txn(client, txn).await;
            crate::mutex::unlock(client, key).await?;
            result
        }
    }
}

/// `keys_per_txn` distinct keys out of `key_count`, and values for `write_percent`% of them
/// (rounded down), as etcd's benchmark picks them.
pub fn make_txn(
    isolation: Isolation,
    key_count: u64,
    keys_per_txn: usize,
    write_percent: usize,
    val_size: usize,
    rng: &mut impl Rng,
) -> StmTxn {
    let mut seen = HashSet::new();
    let mut keys = Vec::with_capacity(keys_per_txn);
    while keys.len() < keys_per_txn && (seen.len() as u64) < key_count {
        let mut key = vec![0u8; STM_KEY_SIZE];
        // A 16-byte key holds any varint of an i64.
        put_varint(&mut key, rng.random_range(0..key_count) as i64);
        if seen.insert(key.clone()) {
            keys.push(key);
        }
    }
    let writes = (0..keys.len() * write_percent / 100)
        .map(|_| random_bytes(val_size, rng))
        .collect();
    StmTxn {
        isolation,
        keys,
        writes,
        locker: Locker::Stm,
    }
}

fn unchanged_since(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Less as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::ModRevision(revision + 1)),
        range_end: Vec::new(),
    }
}

/// Runs the transaction until it commits.
pub async fn run_txn(client: &mut Client, txn: &StmTxn) -> Result<(), tonic::Status> {
    for _ in 0..STM_ATTEMPTS_MAX {
        let mut first_revision = 0;
        let mut compares = Vec::new();
        for key in &txn.keys {
            let mut read = RangeRequest {
                key: key.clone(),
                ..Default::default()
            };
            let snapshot = matches!(
                txn.isolation,
                Isolation::Serializable | Isolation::SerializableSnapshot
            );
            if snapshot && first_revision != 0 {
                read.revision = first_revision;
                read.serializable = true;
            }
            let response = client.kv.range(read).await?.into_inner();
            let revision = response.header.map(|h| h.revision).unwrap_or(0);
            if first_revision == 0 {
                first_revision = revision;
            }
            match txn.isolation {
                Isolation::ReadCommitted => {}
                Isolation::RepeatableReads => compares.push(unchanged_since(key, revision)),
                Isolation::Serializable | Isolation::SerializableSnapshot => {
                    compares.push(unchanged_since(key, first_revision))
                }
            }
        }
        let puts: Vec<RequestOp> = txn
            .keys
            .iter()
            .zip(&txn.writes)
            .map(|(key, value)| RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        if txn.isolation == Isolation::SerializableSnapshot {
            // The written keys are among the keys read, already compared; etcd compares them
            // again, which changes nothing.
            for key in txn.keys.iter().take(txn.writes.len()) {
                compares.push(unchanged_since(key, first_revision));
            }
        }
        let commit = TxnRequest {
            compare: compares,
            success: puts,
            failure: Vec::new(),
        };
        if client.kv.txn(commit).await?.into_inner().succeeded {
            return Ok(());
        }
    }
    Err(tonic::Status::aborted(format!(
        "stm: no commit after {STM_ATTEMPTS_MAX} attempts"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_keys_distinct_and_writes_rounded_down() {
        let mut rng = rand::rng();
        let txn = make_txn(Isolation::RepeatableReads, 10, 3, 50, 8, &mut rng);
        assert_eq!(txn.keys.len(), 3);
        assert_eq!(txn.keys.iter().collect::<HashSet<_>>().len(), 3);
        assert!(txn.keys.iter().all(|k| k.len() == STM_KEY_SIZE));
        assert_eq!(txn.writes.len(), 1, "50% of 3 keys is 1 write");
        assert!(txn.writes.iter().all(|v| v.len() == 8));
        // Never more keys than exist.
        assert_eq!(
            make_txn(Isolation::ReadCommitted, 2, 5, 100, 1, &mut rng)
                .keys
                .len(),
            2
        );
    }

    #[test]
    fn isolation_flags() {
        assert_eq!(
            Isolation::parse("ss"),
            Some(Isolation::SerializableSnapshot)
        );
        assert_eq!(Isolation::parse("c"), Some(Isolation::ReadCommitted));
        assert_eq!(Isolation::parse("x"), None);
        assert_eq!(Locker::parse("lock-client"), Some(Locker::LockClient));
        assert!(Locker::parse("lock-rpc").unwrap().needs_session());
        assert!(!Locker::parse("stm").unwrap().needs_session());
        assert_eq!(Locker::parse("x"), None);
    }
}
