//! check perf and check datascale: load the cluster and judge its throughput or memory use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};
use tokio::sync::Mutex;

use crate::Cx;
use crate::exit::{self, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::global::Ctl;

fn model(load: &str) -> Option<&'static str> {
    Some(match load {
        "s" | "small" => "s",
        "m" | "medium" => "m",
        "l" | "large" => "l",
        "xl" | "xLarge" => "xl",
        _ => return None,
    })
}

#[derive(Default)]
struct Stats {
    lat: Vec<f64>,
    errors: std::collections::BTreeMap<String, u64>,
}

fn random_key(prefix: &str, len: usize) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    let mut tail = vec![0u8; len];
    // binary.PutVarint of a random int63 into a zeroed buffer of `len` bytes.
    let mut v: i64 = rand::random::<i64>() & i64::MAX;
    let mut ux = (v as u64) << 1;
    if v < 0 {
        ux = !ux;
    }
    let mut i = 0;
    while ux >= 0x80 && i < len {
        tail[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    if i < len {
        tail[i] = ux as u8;
    }
    v = 0;
    let _ = v;
    k.extend(tail);
    k
}

async fn ensure_empty(c: &Ctl, prefix: &str) {
    let mut kv = c.client.kv.clone();
    let req = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: etcd_client::prefix_end(prefix.as_bytes()),
        limit: 1,
        ..Default::default()
    };
    let r = crate::call!(c, kv.range(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    if !r.kvs.is_empty() {
        exit::fail(
            EXIT_INVALID_INPUT,
            &format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {} first",
                crate::gofmt::quote(prefix),
                prefix
            ),
        );
    }
}

async fn cleanup(cx: &Cx, c: &Ctl, prefix: &str) {
    let mut kv = c.client.kv.clone();
    let req = DeleteRangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: etcd_client::prefix_end(prefix.as_bytes()),
        ..Default::default()
    };
    let d = crate::call!(c, kv.delete_range(req)).unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e));
    if cx.flags.bool("auto-compact") {
        let rev = d.header.as_ref().map(|h| h.revision).unwrap_or(0);
        println!("Compacting with revision {rev}");
        let r = crate::call!(
            c,
            kv.compact(CompactionRequest {
                revision: rev,
                physical: true,
            })
        );
        if let Err(e) = r {
            exit::fail(EXIT_ERROR, &e);
        }
        println!("Compacted with revision {rev}");
    }
    if cx.flags.bool("auto-defrag") {
        for ep in cx.flags.slice("endpoints") {
            println!("Defragmenting {}", crate::gofmt::quote(&ep));
            let mut m = c.client.maintenance.clone();
            if let Err(e) = crate::call!(c, m.defragment(DefragmentRequest {})) {
                exit::fail(EXIT_ERROR, &e);
            }
            println!("Defragmented {}", crate::gofmt::quote(&ep));
        }
    }
}

/// Runs puts from `clients` workers, at most `rate` per second (0: unlimited), until `count`
/// puts or `duration` has passed.
struct Load<'a> {
    clients: usize,
    rate: u64,
    count: Option<u64>,
    duration: Option<Duration>,
    prefix: &'a str,
    ksize: usize,
    vsize: usize,
}

async fn load(c: &Ctl, l: Load<'_>) -> Stats {
    let Load {
        clients,
        rate,
        count,
        duration,
        prefix,
        ksize,
        vsize,
    } = l;
    let stats = Arc::new(Mutex::new(Stats::default()));
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut c = c.clone();
        c.deadline = None;
        let stats = stats.clone();
        let issued = issued.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut kv = c.client.kv.clone();
            loop {
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Some(max) = count
                    && n >= max
                {
                    return;
                }
                if let Some(d) = duration
                    && start.elapsed() >= d
                {
                    return;
                }
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let req = PutRequest {
                    key: random_key(&prefix, ksize),
                    value: vec![0u8; vsize],
                    ..Default::default()
                };
                let st = Instant::now();
                let r = crate::call!(c, kv.put(req));
                let mut s = stats.lock().await;
                match r {
                    Ok(_) => s.lat.push(st.elapsed().as_secs_f64()),
                    Err(e) => *s.errors.entry(e).or_default() += 1,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut s = stats.lock().await;
    std::mem::take(&mut *s)
}

pub async fn perf(cx: Cx) -> i32 {
    let Some(m) = model(&cx.flags.str("load")) else {
        exit::fail(
            EXIT_BAD_FEATURE,
            &format!("unknown load option {}", cx.flags.str("load")),
        )
    };
    let (limit, clients, duration) = match m {
        "s" => (150u64, 50usize, 60u64),
        "m" => (1000, 200, 60),
        "l" => (8000, 500, 60),
        _ => (15000, 1000, 60),
    };
    let prefix = cx.flags.str("prefix");
    let c = cx.client_forever().await;
    ensure_empty(&c, &prefix).await;
    let st = Instant::now();
    let l = Load {
        clients,
        rate: limit,
        count: None,
        duration: Some(Duration::from_secs(duration)),
        prefix: &prefix,
        ksize: 256,
        vsize: 1024,
    };
    let s = load(&c, l).await;
    let elapsed = st.elapsed().as_secs_f64().max(1e-9);
    cleanup(&cx, &c, &prefix).await;
    let rps = s.lat.len() as f64 / elapsed;
    let slowest = s.lat.iter().cloned().fold(0.0, f64::max);
    let mean = if s.lat.is_empty() {
        0.0
    } else {
        s.lat.iter().sum::<f64>() / s.lat.len() as f64
    };
    let stddev = if s.lat.is_empty() {
        0.0
    } else {
        (s.lat.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / s.lat.len() as f64).sqrt()
    };
    let mut ok = true;
    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (k, v) in &s.errors {
            println!("FAIL: ERROR({k}) -> {v}");
        }
        ok = false;
    }
    if rps / limit as f64 <= 0.9 {
        println!("FAIL: Throughput too low: {} writes/s", rps as i64 + 1);
        ok = false;
    } else {
        println!("PASS: Throughput is {} writes/s", rps as i64 + 1);
    }
    if slowest > 0.5 {
        println!("Slowest request took too long: {slowest:.6}s");
        ok = false;
    } else {
        println!("PASS: Slowest request took {slowest:.6}s");
    }
    if stddev > 0.1 {
        println!("Stddev too high: {stddev:.6}s");
        ok = false;
    } else {
        println!("PASS: Stddev is {stddev:.6}s");
    }
    if ok {
        println!("PASS");
        0
    } else {
        println!("FAIL");
        exit::exit(EXIT_ERROR)
    }
}

/// process_resident_memory_bytes from the endpoint's /metrics (plain HTTP only).
async fn resident_memory(ep: &str) -> f64 {
    let host = ep
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let host = host.split('/').next().unwrap_or(host);
    let fetch = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        s.read_to_string(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<String, String>(body)
    };
    let body = match fetch.await {
        Ok(b) => b,
        Err(e) => {
            println!("fetch error: {e}");
            return 0.0;
        }
    };
    for line in body.lines() {
        if let Some(v) = line.strip_prefix("process_resident_memory_bytes") {
            return v.trim().parse().unwrap_or(0.0);
        }
    }
    println!("could not find: process_resident_memory_bytes");
    0.0
}

pub async fn datascale(cx: Cx) -> i32 {
    let Some(m) = model(&cx.flags.str("load")) else {
        exit::fail(
            EXIT_BAD_FEATURE,
            &format!("unknown load option {}", cx.flags.str("load")),
        )
    };
    let (limit, clients) = match m {
        "s" => (10000u64, 50usize),
        "m" => (100000, 200),
        "l" => (1000000, 500),
        _ => (3000000, 1000),
    };
    let prefix = cx.flags.str("prefix");
    let c = cx.client_forever().await;
    let eps = cx.flags.slice("endpoints");
    ensure_empty(&c, &prefix).await;
    let ep0 = eps.first().cloned().unwrap_or_default();
    let before = resident_memory(&ep0).await;
    if before == 0.0 {
        println!("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        exit::exit(EXIT_ERROR);
    }
    println!(
        "Start data scale check for work load [{limit} key-value pairs, 1024 bytes per key-value, {clients} concurrent clients]."
    );
    let s = load(
        &c,
        Load {
            clients,
            rate: 0,
            count: Some(limit),
            duration: None,
            prefix: &prefix,
            ksize: 512,
            vsize: 512,
        },
    )
    .await;
    let after = resident_memory(&ep0).await;
    if after == 0.0 {
        println!("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        exit::exit(EXIT_ERROR);
    }
    cleanup(&cx, &c, &prefix).await;
    let mb = (after - before) / (1024.0 * 1024.0);
    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (k, v) in &s.errors {
            println!("FAIL: ERROR({k}) -> {v}");
        }
        exit::exit(EXIT_ERROR);
    }
    println!("PASS: Approximate system memory used : {mb:.2} MB.");
    0
}
