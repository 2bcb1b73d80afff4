//! snapshot save (from a member), status and restore (offline, through etcdutl's library).

use std::io::Write;

use etcd_api::etcdserverpb::SnapshotRequest;
use tokio_stream::StreamExt;

use crate::Cx;
use crate::cli::{FlagDef, Kind, flag};
use crate::exit::{self, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED};
use crate::printer::DbStatus;

pub const STATUS_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size.
";

pub fn restore_flags() -> Vec<FlagDef> {
    vec![
        flag("data-dir", Kind::Str, "", "Path to the data directory"),
        flag(
            "wal-dir",
            Kind::Str,
            "",
            "Path to the WAL directory (use --data-dir if none given)",
        ),
        flag(
            "initial-cluster",
            Kind::Str,
            "default=http://localhost:2380",
            "Initial cluster configuration for restore bootstrap",
        ),
        flag(
            "initial-cluster-token",
            Kind::Str,
            "etcd-cluster",
            "Initial cluster token for the etcd cluster during restore bootstrap",
        ),
        flag(
            "initial-advertise-peer-urls",
            Kind::Str,
            "http://localhost:2380",
            "List of this member's peer URLs to advertise to the rest of the cluster",
        ),
        flag(
            "name",
            Kind::Str,
            "default",
            "Human-readable name for this member",
        ),
        flag(
            "skip-hash-check",
            Kind::Bool,
            "false",
            "Ignore snapshot integrity hash value (required if copied from data directory)",
        ),
    ]
}

/// A zap info line as clientv3/snapshot writes them (epoch-seconds or ISO time).
fn info(caller: &str, msg: &str, fields: &[(&str, String)], iso: bool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts = if iso {
        crate::json::string(&crate::global::iso_time())
    } else {
        format!("{}", now.as_secs_f64())
    };
    let mut s = format!(
        "{{\"level\":\"info\",\"ts\":{ts},\"caller\":{},\"msg\":{}",
        crate::json::string(caller),
        crate::json::string(msg)
    );
    for (k, v) in fields {
        s.push_str(&format!(",{}:{v}", crate::json::string(k)));
    }
    s.push('}');
    eprintln!("{s}");
}

pub async fn save(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(EXIT_BAD_ARGS, "snapshot save expects one argument");
    }
    let cfg = cx.cfg();
    if cfg.endpoints.len() != 1 {
        exit::fail(
            EXIT_INTERRUPTED,
            &format!(
                "snapshot must be requested to one selected node, not multiple [{}]",
                cfg.endpoints.join(" ")
            ),
        );
    }
    let deadline = if cx.flags.changed("command-timeout") {
        cx.deadline()
    } else {
        None
    };
    let path = cx.args[0].clone();
    let part = format!("{path}.part");
    let res = async {
        let c = cfg.connect(deadline).await.map_err(|(_, e)| e)?;
        let mut m = c.client.maintenance.clone();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)
            .map_err(|e| e.to_string())?;
        info(
            "snapshot/v3_snapshot.go:119",
            "created temporary db file",
            &[("path", crate::json::string(&part))],
            false,
        );
        let started = std::time::Instant::now();
        let endpoint = cfg.endpoints[0].clone();
        let download = async {
            let mut stream = m
                .snapshot(c.req(SnapshotRequest {}))
                .await
                .map_err(|s| exit::status_text(&s))?
                .into_inner();
            info(
                "clientv3/maintenance.go:200",
                "opened snapshot stream; downloading",
                &[],
                true,
            );
            info(
                "snapshot/v3_snapshot.go:127",
                "fetching snapshot",
                &[("endpoint", crate::json::string(&endpoint))],
                false,
            );
            let mut size = 0u64;
            while let Some(item) = stream.next().await {
                let chunk = item.map_err(|s| exit::status_text(&s))?;
                f.write_all(&chunk.blob).map_err(|e| e.to_string())?;
                size += chunk.blob.len() as u64;
            }
            info(
                "clientv3/maintenance.go:208",
                "completed snapshot read; closing",
                &[],
                true,
            );
            f.sync_all().map_err(|e| e.to_string())?;
            info(
                "snapshot/v3_snapshot.go:142",
                "fetched snapshot",
                &[
                    ("endpoint", crate::json::string(&endpoint)),
                    (
                        "size",
                        crate::json::string(&crate::gofmt::humanize_bytes(size)),
                    ),
                    ("took", format!("{}", started.elapsed().as_secs_f64())),
                ],
                false,
            );
            Ok::<(), String>(())
        };
        match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), download)
                .await
                .map_err(|_| "context deadline exceeded".to_string())??,
            None => download.await?,
        }
        std::fs::rename(&part, &path).map_err(|e| e.to_string())?;
        info(
            "snapshot/v3_snapshot.go:152",
            "saved",
            &[("path", crate::json::string(&path))],
            false,
        );
        Ok::<(), String>(())
    }
    .await;
    let _ = std::fs::remove_file(&part);
    if let Err(e) = res {
        exit::fail(EXIT_INTERRUPTED, &e);
    }
    println!("Snapshot saved at {path}");
    0
}

pub fn status(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(
            EXIT_BAD_ARGS,
            "snapshot status requires exactly one argument",
        );
    }
    let st = etcdutl::snapshot::status(std::path::Path::new(&cx.args[0]))
        .unwrap_or_else(|e| exit::fail(EXIT_ERROR, &e.to_string()));
    cx.printer.db_status(&DbStatus {
        hash: st.hash,
        revision: st.revision,
        total_key: st.total_key,
        total_size: st.total_size,
    });
    0
}

pub fn restore(cx: Cx) -> i32 {
    if cx.args.len() != 1 {
        exit::fail(
            EXIT_BAD_ARGS,
            "snapshot restore requires exactly one argument",
        );
    }
    let f = &cx.flags;
    let name = f.str("name");
    let data_dir = if f.str("data-dir").is_empty() {
        format!("{name}.etcd")
    } else {
        f.str("data-dir")
    };
    let wal_dir = if f.str("wal-dir").is_empty() {
        std::path::Path::new(&data_dir)
            .join("member")
            .join("wal")
            .to_string_lossy()
            .into_owned()
    } else {
        f.str("wal-dir")
    };
    let cfg = etcdutl::snapshot::RestoreConfig {
        snapshot_path: cx.args[0].clone().into(),
        name,
        output_data_dir: data_dir.into(),
        output_wal_dir: wal_dir.into(),
        peer_urls: f
            .str("initial-advertise-peer-urls")
            .split(',')
            .map(String::from)
            .collect(),
        initial_cluster: f.str("initial-cluster"),
        initial_cluster_token: f.str("initial-cluster-token"),
        skip_hash_check: f.bool("skip-hash-check"),
    };
    if let Err(e) = etcdutl::snapshot::restore(&cfg) {
        exit::fail(EXIT_ERROR, &e.to_string());
    }
    0
}
