//! The benchmarks: each turns its flags into a stream of requests for [`run::run`].

use etcd_api::etcdserverpb::{
    PutRequest, RangeRequest, RequestOp, TxnRequest, request_op::Request,
};
use rand::{Rng, SeedableRng};

use crate::cli::{
    Command, LeaseKeepaliveArgs, PutArgs, RangeArgs, StmArgs, TxnMixedArgs, TxnPutArgs,
};
use crate::keys::{KeyGen, random_bytes};
use crate::report::Stats;
use crate::run::{self, BenchError, Op};

pub async fn put(clients: run::Clients, args: PutArgs) -> Result<Stats, BenchError> {
    let mut keys = KeyGen::new(args.key_size, args.key_space_size, args.sequential_keys)
        .map_err(|e| BenchError::Usage(e.to_string()))?;
    let value = random_bytes(args.val_size, &mut rand::rng());
    let compactor = (!args.compact_interval.is_zero()).then(|| {
        run::spawn_compactor(
            clients[0].clone(),
            args.compact_interval,
            args.compact_index_delta,
        )
    });
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let stats = run::run(clients, args.total, args.rate, move |_| {
        Op::Put(PutRequest {
            key: keys.next_key(&mut rng),
            value: value.clone(),
            ..Default::default()
        })
    })
    .await;
    if let Some(c) = compactor {
        c.abort();
    }
    Ok(stats)
}

/// `put --check-hashkv`: the first endpoint's HashKV, how long it took (the first call warms
/// up, as etcd's) and its database size, printed after the report.
pub async fn hash_kv_summary(
    endpoint: &str,
    shown: &str,
    options: etcd_client::ConnectOptions,
    credentials: Option<etcd_client::Credentials>,
) -> Result<String, BenchError> {
    use etcd_api::etcdserverpb::{HashKvRequest, StatusRequest};
    let mut client = crate::run::connect(&[endpoint], options, credentials).await?;
    let started = std::time::Instant::now();
    let _ = client
        .maintenance
        .hash_kv(HashKvRequest { revision: 0 })
        .await;
    let hash = client
        .maintenance
        .hash_kv(HashKvRequest { revision: 0 })
        .await
        .map_err(etcd_client::ClientError::from)?
        .into_inner()
        .hash;
    let taken = started.elapsed();
    let status = client
        .maintenance
        .status(StatusRequest {})
        .await
        .map_err(etcd_client::ClientError::from)?
        .into_inner();
    Ok(format!(
        "HashKV Summary:\n\tHashKV: {hash}\n\tEndpoint: {shown}\n\tTime taken to get hashkv: {}\n\tDB size: {}",
        crate::report::go_duration(taken),
        crate::report::humanize_bytes(status.db_size.max(0) as u64)
    ))
}

/// The range request the `range` benchmark repeats.
pub fn range_request(args: &RangeArgs) -> Result<RangeRequest, BenchError> {
    let serializable = match args.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => {
            return Err(BenchError::Usage(format!(
                "unknown consistency flag {other:?}"
            )));
        }
    };
    Ok(RangeRequest {
        key: args.key.as_bytes().to_vec(),
        range_end: if args.from_key {
            vec![0]
        } else {
            args.end.clone().unwrap_or_default().into_bytes()
        },
        limit: args.limit,
        serializable,
        count_only: args.count_only,
        ..Default::default()
    })
}

/// Authenticate in a loop: the cost of password checks, and what a storm of them does to
/// the other requests a server serves meanwhile.
pub async fn authenticate(
    clients: run::Clients,
    args: crate::cli::AuthenticateArgs,
) -> Result<Stats, BenchError> {
    let credentials = etcd_client::Credentials::parse(&args.user).ok_or_else(|| {
        BenchError::Usage(format!(
            "{:?} needs a password: give name:password",
            args.user
        ))
    })?;
    let request = etcd_api::etcdserverpb::AuthenticateRequest {
        name: credentials.user,
        password: credentials.password,
    };
    Ok(run::run(clients, args.total, args.rate, move |_| {
        Op::Authenticate(request.clone())
    })
    .await)
}

pub async fn range(clients: run::Clients, args: RangeArgs) -> Result<Stats, BenchError> {
    let request = range_request(&args)?;
    if request.serializable {
        println!("bench with serializable range");
    } else {
        println!("bench with linearizable range");
    }
    let stream = args.stream;
    Ok(run::run(clients, args.total, args.rate, move |_| {
        if stream {
            Op::RangeStream(request.clone())
        } else {
            Op::Range(request.clone())
        }
    })
    .await)
}

/// Txn `i` puts keys `i*ops .. i*ops+ops` modulo the key space, as etcd's `txn-put`.
pub fn txn_put_request(
    keys: &KeyGen,
    i: usize,
    ops: usize,
    key_space_size: u64,
    value: &[u8],
) -> TxnRequest {
    let success = (0..ops)
        .map(|j| {
            let number = ((i * ops + j) as u64) % key_space_size;
            RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    // KeyGen::new checked every number below the key space fits.
                    key: keys.key_for(number).unwrap_or_default(),
                    value: value.to_vec(),
                    ..Default::default()
                })),
            }
        })
        .collect();
    TxnRequest {
        success,
        ..Default::default()
    }
}

pub async fn txn_put(clients: run::Clients, args: TxnPutArgs) -> Result<Stats, BenchError> {
    let keys = KeyGen::new(args.key_size, args.key_space_size, true)
        .map_err(|e| BenchError::Usage(e.to_string()))?;
    let value = random_bytes(args.val_size, &mut rand::rng());
    let (ops, space) = (args.txn_ops, args.key_space_size);
    Ok(run::run(clients, args.total, args.rate, move |i| {
        Op::Txn(txn_put_request(&keys, i, ops, space, &value))
    })
    .await)
}

/// Tags of `txn-mixed` samples.
pub const TAG_READ: u8 = 0;
pub const TAG_WRITE: u8 = 1;

/// The read of `txn-mixed`: from the first key to `--end-key`, or every key when it is empty,
/// at most `limit` of them.
pub fn txn_mixed_read(end_key: &str, limit: i64, serializable: bool) -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: if end_key.is_empty() {
            vec![0]
        } else {
            end_key.as_bytes().to_vec()
        },
        limit,
        serializable,
        ..Default::default()
    }
}

/// Whether a request with this uniform draw in [0, 1) is a read: reads are
/// `rw_ratio / (1 + rw_ratio)` of the load.
pub fn is_read(draw: f64, rw_ratio: f64) -> bool {
    draw < rw_ratio / (1.0 + rw_ratio)
}

pub async fn txn_mixed(
    clients: run::Clients,
    args: TxnMixedArgs,
) -> Result<(Stats, Stats), BenchError> {
    let serializable = match args.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => {
            return Err(BenchError::Usage(format!(
                "unknown consistency flag {other:?}"
            )));
        }
    };
    if serializable {
        println!("bench with serializable range");
    } else {
        println!("bench with linearizable range");
    }
    let keys = KeyGen::new(args.key_size, args.key_space_size, true)
        .map_err(|e| BenchError::Usage(e.to_string()))?;
    let value = random_bytes(args.val_size, &mut rand::rng());
    let read = txn_mixed_read(&args.end_key, args.limit, serializable);
    let space = args.key_space_size;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let rw_ratio = args.rw_ratio;
    // As etcd's, request `i`, when a write, puts key number `i % key space`.
    let (samples, elapsed) = run::run_tagged(clients, args.total, args.rate, move |i| {
        let (op, tag) = if is_read(rng.random::<f64>(), rw_ratio) {
            (Request::RequestRange(read.clone()), TAG_READ)
        } else {
            let put = PutRequest {
                // KeyGen::new checked every number below the key space fits.
                key: keys.key_for(i as u64 % space).unwrap_or_default(),
                value: value.clone(),
                ..Default::default()
            };
            (Request::RequestPut(put), TAG_WRITE)
        };
        let txn = TxnRequest {
            success: vec![RequestOp { request: Some(op) }],
            ..Default::default()
        };
        (Op::Txn(txn), tag)
    })
    .await;
    let (reads, writes): (Vec<_>, Vec<_>) = samples.into_iter().partition(|s| s.tag == TAG_READ);
    Ok((Stats::new(&reads, elapsed), Stats::new(&writes, elapsed)))
}

pub async fn lease_keepalive(
    clients: run::Clients,
    args: LeaseKeepaliveArgs,
) -> Result<Stats, BenchError> {
    Ok(run::run(clients, args.total, 0, |_| Op::LeaseKeepAliveOnce).await)
}

/// Checks `stm`'s flags, as etcd's, returning the isolation and locker they name.
pub fn stm_flags(
    args: &StmArgs,
) -> Result<(crate::stm::Isolation, crate::stm::Locker), BenchError> {
    if args.keys == 0 {
        return Err(BenchError::Usage(format!(
            "expected positive --keys, got ({})",
            args.keys
        )));
    }
    if args.txn_wr_percent > 100 {
        return Err(BenchError::Usage(format!(
            "expected [0, 100] --txn-wr-percent, got ({})",
            args.txn_wr_percent
        )));
    }
    if args.keys_per_txn as u64 > args.keys {
        return Err(BenchError::Usage(format!(
            "expected --keys-per-txn between 0 and {}, got ({})",
            args.keys, args.keys_per_txn
        )));
    }
    let isolation = crate::stm::Isolation::parse(&args.isolation).ok_or_else(|| {
        BenchError::Usage(format!(
            "unknown --isolation {:?} (c, r, s or ss)",
            args.isolation
        ))
    })?;
    let locker = crate::stm::Locker::parse(&args.stm_locker)
        .ok_or_else(|| BenchError::Usage(format!("unexpected stm locker {:?}", args.stm_locker)))?;
    Ok((isolation, locker))
}

pub async fn stm(clients: run::Clients, args: StmArgs) -> Result<Stats, BenchError> {
    let (isolation, locker) = stm_flags(&args)?;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    Ok(run::run(clients, args.total, args.rate, move |_| {
        let mut txn = crate::stm::make_txn(
            isolation,
            args.keys,
            args.keys_per_txn,
            args.txn_wr_percent,
            args.val_size,
            &mut rng,
        );
        txn.locker = locker;
        Op::Stm(txn)
    })
    .await)
}

/// Checks a command's flags before any connection is made, so a usage error is reported as
/// such rather than hidden behind a connection error.
pub fn check_flags(command: &Command) -> Result<(), BenchError> {
    let usage = |e: crate::keys::KeyError| BenchError::Usage(e.to_string());
    match command {
        Command::Put(a) => KeyGen::new(a.key_size, a.key_space_size, a.sequential_keys)
            .map(drop)
            .map_err(usage),
        Command::TxnPut(a) => KeyGen::new(a.key_size, a.key_space_size, true)
            .map(drop)
            .map_err(usage),
        Command::TxnMixed(a) => {
            if !matches!(a.consistency.as_str(), "l" | "s") {
                return Err(BenchError::Usage(format!(
                    "unknown consistency flag {:?}",
                    a.consistency
                )));
            }
            KeyGen::new(a.key_size, a.key_space_size, true)
                .map(drop)
                .map_err(usage)
        }
        Command::Watch(a) => KeyGen::new(a.key_size, a.key_space_size, a.sequential_keys)
            .map(drop)
            .map_err(usage),
        Command::Range(a) => range_request(a).map(drop),
        Command::Stm(a) => stm_flags(a).map(drop),
        Command::Authenticate(a) => etcd_client::Credentials::parse(&a.user)
            .map(drop)
            .ok_or_else(|| {
                BenchError::Usage(format!("{:?} needs a password: give name:password", a.user))
            }),
        Command::LeaseKeepalive(_)
        | Command::WatchLatency(_)
        | Command::WatchGet(_)
        | Command::WatchScale(_)
        | Command::LeaseScale(_)
        | Command::Mvcc(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_args(consistency: &str) -> RangeArgs {
        RangeArgs {
            key: "a".into(),
            end: Some("b".into()),
            rate: 0,
            total: 1,
            consistency: consistency.into(),
            limit: 5,
            count_only: true,
            from_key: false,
            stream: false,
        }
    }

    #[test]
    fn flags_checked_before_connecting() {
        use clap::Parser;
        let check = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(args).unwrap();
            check_flags(&cli.command)
        };
        assert!(check(&["benchmark", "put"]).is_ok());
        assert!(
            check(&[
                "benchmark",
                "put",
                "--key-size",
                "1",
                "--key-space-size",
                "1000"
            ])
            .is_err()
        );
        assert!(check(&["benchmark", "range", "a", "--consistency", "q"]).is_err());
        assert!(check(&["benchmark", "stm", "--keys", "2", "--keys-per-txn", "3"]).is_err());
        assert!(check(&["benchmark", "stm", "--txn-wr-percent", "101"]).is_err());
        assert!(check(&["benchmark", "stm", "--stm-locker", "x"]).is_err());
        assert!(check(&["benchmark", "txn-mixed", "--consistency", "x"]).is_err());
    }

    #[test]
    fn range_flags_map_to_request() {
        let r = range_request(&range_args("s")).unwrap();
        assert!(r.serializable && r.count_only);
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice(), r.limit),
            (&b"a"[..], &b"b"[..], 5)
        );
        assert!(!range_request(&range_args("l")).unwrap().serializable);
        assert!(range_request(&range_args("x")).is_err());
        let every = RangeArgs {
            end: None,
            from_key: true,
            ..range_args("l")
        };
        assert_eq!(range_request(&every).unwrap().range_end, vec![0]);
    }

    #[test]
    fn read_share_follows_rw_ratio() {
        // rw-ratio 1: half reads; 3: three quarters.
        assert!(is_read(0.49, 1.0) && !is_read(0.5, 1.0));
        assert!(is_read(0.74, 3.0) && !is_read(0.75, 3.0));
        assert!(!is_read(0.0, 0.0), "ratio 0 is writes only");
        let r = txn_mixed_read("", 1000, true);
        assert_eq!((r.key, r.range_end, r.limit), (vec![0], vec![0], 1000));
        assert_eq!(txn_mixed_read("k", 5, false).range_end, b"k");
    }

    #[test]
    fn txn_put_keys_advance_and_wrap() {
        let keys = KeyGen::new(8, 5, true).unwrap();
        let txn = txn_put_request(&keys, 1, 3, 5, b"v");
        let got: Vec<Vec<u8>> = txn
            .success
            .iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(p)) => p.key.clone(),
                _ => panic!("not a put"),
            })
            .collect();
        // Txn 1 with 3 ops covers numbers 3, 4, 0 (wrapping at 5).
        let want: Vec<Vec<u8>> = [3, 4, 0]
            .iter()
            .map(|n| keys.key_for(*n).unwrap())
            .collect();
        assert_eq!(got, want);
    }
}
