//! `mvcc put`: puts straight into our MVCC store in this process, with no server, network or
//! Raft, as etcd's `benchmark mvcc put` does against its own. The store lives in a temporary
//! directory removed at the end. A sample is one transaction of `--txn-ops` puts, each with a
//! key and value of random bytes.

use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{PutRequest, RequestOp, TxnRequest, request_op::Request};
use etcd_mvcc::{Store, StoreOptions};

use crate::cli::MvccPutArgs;
use crate::keys::random_bytes;
use crate::report::{Sample, Stats};
use crate::run::BenchError;

/// Puts `puts` as one write: a plain put for one, a transaction for more (one revision).
fn write(store: &Store, puts: Vec<PutRequest>) -> Result<(), String> {
    let no_leases = |_: i64| false;
    let result = store.apply(|batch| {
        if puts.len() == 1 {
            batch.put(&puts[0], &no_leases).map(drop)
        } else {
            let txn = TxnRequest {
                success: puts
                    .into_iter()
                    .map(|p| RequestOp {
                        request: Some(Request::RequestPut(p)),
                    })
                    .collect(),
                ..Default::default()
            };
            batch.txn(&txn, &no_leases).map(drop)
        }
    });
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) | Err(e) => Err(e.to_string()),
    }
}

pub fn put(
    batch_interval_ms: u64,
    batch_limit: usize,
    args: &MvccPutArgs,
) -> Result<Stats, BenchError> {
    if args.txn_ops == 0 {
        return Err(BenchError::Usage("--txn-ops must be positive".into()));
    }
    let dir = tempfile::Builder::new()
        .prefix("mvcc-bench")
        .tempdir()
        .map_err(|e| BenchError::Usage(format!("cannot create the store directory: {e}")))?;
    let options = StoreOptions {
        batch_interval: Duration::from_millis(batch_interval_ms),
        batch_limit,
        ..StoreOptions::default()
    };
    let store = Store::open(&dir.path().join("db"), options)
        .map_err(|e| BenchError::Usage(format!("cannot open the store: {e}")))?;
    let mut rng = rand::rng();
    let txns = args.total / args.txn_ops;
    let mut samples = Vec::with_capacity(txns);
    let started = Instant::now();
    for _ in 0..txns {
        // Keys and values are made outside the measured time.
        let puts: Vec<PutRequest> = (0..args.txn_ops)
            .map(|_| PutRequest {
                key: random_bytes(args.key_size, &mut rng),
                value: random_bytes(args.val_size, &mut rng),
                ..Default::default()
            })
            .collect();
        let start_unix_secs = crate::run::unix_secs();
        let start = Instant::now();
        let result = write(&store, puts);
        samples.push(Sample {
            latency: start.elapsed(),
            error: result.err(),
            tag: 0,
            start_unix_secs,
        });
    }
    Ok(Stats::new(&samples, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_into_a_temporary_store() {
        let args = MvccPutArgs {
            total: 20,
            key_size: 16,
            val_size: 8,
            txn_ops: 4,
        };
        let stats = put(100, 10_000, &args).unwrap();
        assert_eq!(stats.latencies.len(), 5, "20 puts in txns of 4");
        assert!(stats.errors.is_empty(), "{:?}", stats.errors);
        let single = MvccPutArgs { txn_ops: 1, ..args };
        assert_eq!(put(100, 10_000, &single).unwrap().latencies.len(), 20);
    }
}
