//! etcd's YAML config file (`--config-file`), read as etcd 3.4 reads it (`embed.ConfigFromFile`
//! plus etcdmain's proxy keys): the keys are the flag names; URL lists are comma-separated
//! strings; TLS settings sit in `client-transport-security` and `peer-transport-security`;
//! durations are integer nanoseconds. Keys match case-insensitively (Go's JSON decoding), a null
//! value keeps the default, YAML 1.1 booleans (`yes`, `off`) count as booleans.
//!
//! Beyond etcd, so that files etcd rejects for no good reason work (checked against etcd
//! 3.4.23, which refuses all of these): numbers and booleans for string keys
//! (`auto-compaction-retention: 1`), Go duration strings ("5s") for durations, and a
//! comma-separated string or a YAML sequence for every list. Unknown keys, which etcd ignores
//! silently, produce a warning so a typo does not go unnoticed.

use std::path::PathBuf;
use std::time::Duration;

use serde_yaml::Value;
use url::Url;

use super::values::{self, go_quote, parse_go_duration, parse_yaml11_bool};
use super::{ConfigError, DEFAULT_INITIAL_CLUSTER, Staging, TlsConfig};

pub(super) type Setter = fn(&mut Staging, &Value) -> Result<(), String>;

/// Top-level keys etcd 3.4 reads from the file, each with how to apply its value.
#[rustfmt::skip]
pub(super) static KEYS: &[(&str, Setter)] = &[
    ("name", |st, v| { st.cfg.name = string(v)?; Ok(()) }),
    ("data-dir", |st, v| { st.cfg.data_dir = PathBuf::from(string(v)?); Ok(()) }),
    ("wal-dir", |st, v| { st.cfg.wal_dir = opt_path(v)?; Ok(()) }),
    ("snapshot-count", |st, v| { st.cfg.snapshot_count = uint(v, 64)?; Ok(()) }),
    ("max-snapshots", |st, v| { st.cfg.max_snapshots = uint(v, 64)?; Ok(()) }),
    ("max-wals", |st, v| { st.cfg.max_wals = uint(v, 64)?; Ok(()) }),
    ("heartbeat-interval", |st, v| { st.cfg.heartbeat_interval_ms = uint(v, 64)?; Ok(()) }),
    ("election-timeout", |st, v| { st.cfg.election_timeout_ms = uint(v, 64)?; Ok(()) }),
    ("initial-election-tick-advance", |st, v| { st.cfg.initial_election_tick_advance = boolean(v)?; Ok(()) }),
    ("backend-batch-interval", |st, v| { st.cfg.backend_batch_interval = duration(v)?; Ok(()) }),
    ("backend-batch-limit", |st, v| { st.cfg.backend_batch_limit = int(v)?; Ok(()) }),
    ("quota-backend-bytes", |st, v| { st.cfg.quota_backend_bytes = int(v)?; Ok(()) }),
    ("max-txn-ops", |st, v| { st.cfg.max_txn_ops = uint(v, 64)?; Ok(()) }),
    ("max-request-bytes", |st, v| { st.cfg.max_request_bytes = uint(v, 64)?; Ok(()) }),
    ("max-concurrent-streams", |st, v| { st.cfg.max_concurrent_streams = uint(v, 32)? as u32; Ok(()) }),
    ("listen-peer-urls", |st, v| urls(&mut st.cfg.listen_peer_urls, v)),
    ("listen-client-urls", |st, v| urls(&mut st.cfg.listen_client_urls, v)),
    ("initial-advertise-peer-urls", |st, v| urls(&mut st.cfg.initial_advertise_peer_urls, v)),
    ("advertise-client-urls", |st, v| urls(&mut st.cfg.advertise_client_urls, v)),
    ("listen-metrics-urls", |st, v| urls(&mut st.cfg.listen_metrics_urls, v)),
    ("client-transport-security", |st, v| security(st, v, Side::Client)),
    ("peer-transport-security", |st, v| security(st, v, Side::Peer)),
    ("cipher-suites", |st, v| { st.cfg.cipher_suites = strings(v)?; Ok(()) }),
    ("initial-cluster-state", |st, v| { st.initial_cluster_state = string(v)?; Ok(()) }),
    ("discovery-srv", |st, v| { st.cfg.discovery_srv = opt_string(v)?; Ok(()) }),
    ("discovery-srv-name", |st, v| { st.cfg.discovery_srv_name = opt_string(v)?; Ok(()) }),
    ("discovery-proxy", |st, v| { st.cfg.discovery_proxy = opt_string(v)?; Ok(()) }),
    ("discovery", |st, v| { st.cfg.discovery = opt_string(v)?; Ok(()) }),
    ("discovery-fallback", |st, v| { st.discovery_fallback = choice(v, &["exit", "proxy"])?; Ok(()) }),
    ("initial-cluster", |st, v| { st.initial_cluster = string(v)?; Ok(()) }),
    ("initial-cluster-token", |st, v| { st.cfg.initial_cluster_token = string(v)?; Ok(()) }),
    ("strict-reconfig-check", |st, v| { st.cfg.strict_reconfig_check = boolean(v)?; Ok(()) }),
    ("enable-v2", |st, v| { st.cfg.enable_v2 = boolean(v)?; Ok(()) }),
    ("enable-ui", |st, v| { st.cfg.enable_ui = boolean(v)?; Ok(()) }),
    ("auto-compaction-mode", |st, v| { st.auto_compaction_mode = string(v)?; Ok(()) }),
    ("auto-compaction-retention", |st, v| { st.auto_compaction_retention = string(v)?; Ok(()) }),
    ("grpc-keepalive-min-time", |st, v| { st.cfg.grpc_keepalive_min_time = duration(v)?; Ok(()) }),
    ("grpc-keepalive-interval", |st, v| { st.cfg.grpc_keepalive_interval = duration(v)?; Ok(()) }),
    ("grpc-keepalive-timeout", |st, v| { st.cfg.grpc_keepalive_timeout = duration(v)?; Ok(()) }),
    ("pre-vote", |st, v| { st.cfg.pre_vote = boolean(v)?; Ok(()) }),
    ("cors", |st, v| cors(&mut st.cfg.cors, v)),
    ("host-whitelist", |st, v| { host_whitelist(&mut st.cfg.host_whitelist, v) }),
    ("auth-token", |st, v| { st.cfg.auth_token = string(v)?; Ok(()) }),
    ("bcrypt-cost", |st, v| { st.cfg.bcrypt_cost = uint(v, 64)?; Ok(()) }),
    ("auth-token-ttl", |st, v| { st.cfg.auth_token_ttl_secs = uint(v, 64)?; Ok(()) }),
    ("experimental-initial-corrupt-check", |st, v| { st.cfg.experimental_initial_corrupt_check = boolean(v)?; Ok(()) }),
    ("experimental-corrupt-check-time", |st, v| { st.cfg.experimental_corrupt_check_time = duration(v)?; Ok(()) }),
    ("experimental-snapshot-catchup-entries", |st, v| { st.cfg.experimental_snapshot_catchup_entries = uint(v, 64)?; Ok(()) }),
    ("experimental-enable-v2v3", |st, v| { st.cfg.experimental_enable_v2v3 = opt_string(v)?; Ok(()) }),
    ("experimental-backend-bbolt-freelist-type", |st, v| { st.cfg.experimental_backend_bbolt_freelist_type = string(v)?; Ok(()) }),
    ("experimental-enable-lease-checkpoint", |st, v| { st.cfg.experimental_enable_lease_checkpoint = boolean(v)?; Ok(()) }),
    ("experimental-enable-lease-checkpoint-persist", |st, v| { st.cfg.experimental_enable_lease_checkpoint_persist = boolean(v)?; Ok(()) }),
    ("experimental-compaction-batch-limit", |st, v| { st.cfg.experimental_compaction_batch_limit = int(v)?; Ok(()) }),
    ("experimental-watch-progress-notify-interval", |st, v| { st.cfg.experimental_watch_progress_notify_interval = duration(v)?; Ok(()) }),
    ("experimental-warning-apply-duration", |st, v| { st.cfg.experimental_warning_apply_duration = duration(v)?; Ok(()) }),
    ("force-new-cluster", |st, v| { st.cfg.force_new_cluster = boolean(v)?; Ok(()) }),
    ("enable-pprof", |st, v| { st.cfg.enable_pprof = boolean(v)?; Ok(()) }),
    ("metrics", |st, v| { st.cfg.metrics = string(v)?; Ok(()) }),
    ("logger", |st, v| { st.logger = string(v)?; Ok(()) }),
    ("log-level", |st, v| { st.log_level = string(v)?; Ok(()) }),
    ("log-outputs", |st, v| { st.cfg.log_outputs = strings(v)?; Ok(()) }),
    ("log-output", |st, v| { st.log_output_deprecated = strings(v)?; Ok(()) }),
    ("debug", |st, v| { st.cfg.debug = boolean(v)?; Ok(()) }),
    ("log-package-levels", |st, v| { st.cfg.log_package_levels = opt_string(v)?; Ok(()) }),
    ("enable-grpc-gateway", |st, v| { st.cfg.enable_grpc_gateway = boolean(v)?; Ok(()) }),
    ("unsafe-no-fsync", |st, v| { st.cfg.unsafe_no_fsync = boolean(v)?; Ok(()) }),
    // etcdmain's v2 proxy settings.
    ("proxy", |st, v| { st.proxy = choice(v, &["off", "on", "readonly"])?; Ok(()) }),
    ("proxy-failure-wait", |st, v| { st.cfg.proxy_failure_wait_ms = uint(v, 64)?; Ok(()) }),
    ("proxy-refresh-interval", |st, v| { st.cfg.proxy_refresh_interval_ms = uint(v, 64)?; Ok(()) }),
    ("proxy-dial-timeout", |st, v| { st.cfg.proxy_dial_timeout_ms = uint(v, 64)?; Ok(()) }),
    ("proxy-write-timeout", |st, v| { st.cfg.proxy_write_timeout_ms = uint(v, 64)?; Ok(()) }),
    ("proxy-read-timeout", |st, v| { st.cfg.proxy_read_timeout_ms = uint(v, 64)?; Ok(()) }),
];

/// Keys of `client-transport-security` / `peer-transport-security`.
pub(super) type TlsSetter = fn(&mut TlsConfig, &Value) -> Result<(), String>;
#[rustfmt::skip]
pub(super) static TLS_KEYS: &[(&str, TlsSetter)] = &[
    ("cert-file", |t, v| { t.cert_file = opt_path(v)?; Ok(()) }),
    ("key-file", |t, v| { t.key_file = opt_path(v)?; Ok(()) }),
    ("client-cert-auth", |t, v| { t.client_cert_auth = boolean(v)?; Ok(()) }),
    ("trusted-ca-file", |t, v| { t.trusted_ca_file = opt_path(v)?; Ok(()) }),
    ("auto-tls", |t, v| { t.auto_tls = boolean(v)?; Ok(()) }),
];

/// Reads `path` into `st` (which holds the defaults), then applies etcd's file-only defaults.
pub(super) fn load(st: &mut Staging, path: &str) -> Result<(), ConfigError> {
    let file_err = |reason: String| ConfigError::File {
        path: path.to_string(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| file_err(format!("open {path}: {e}")))?;
    let doc: Value =
        serde_yaml::from_slice(&text).map_err(|e| file_err(format!("not valid YAML: {e}")))?;
    let map = match doc {
        Value::Null => serde_yaml::Mapping::new(),
        Value::Mapping(m) => m,
        other => {
            return Err(file_err(format!(
                "expected a mapping of etcd settings at the top level, got {}",
                kind(&other)
            )));
        }
    };
    for (k, v) in &map {
        let key = key_string(k).ok_or_else(|| {
            file_err(format!(
                "unsupported key of type {} (keys are setting names)",
                kind(k)
            ))
        })?;
        let Some((_, setter)) = find(KEYS, &key) else {
            st.warnings.push(format!(
                "unrecognized key {} in config file {} is ignored; check its spelling",
                go_quote(&key),
                go_quote(path)
            ));
            continue;
        };
        if v.is_null() {
            continue;
        }
        setter(st, v).map_err(|reason| ConfigError::FileKey {
            path: path.to_string(),
            key: key.clone(),
            reason,
        })?;
    }
    // What etcd does after reading the file: discovery replaces the default initial cluster,
    // and an empty cluster state means new.
    if (st.cfg.discovery.is_some() || st.cfg.discovery_srv.is_some())
        && st.initial_cluster == DEFAULT_INITIAL_CLUSTER
    {
        st.initial_cluster.clear();
    }
    if st.initial_cluster_state.is_empty() {
        st.initial_cluster_state = "new".to_string();
    }
    Ok(())
}

/// Go's JSON field matching: an exact match, else the first case-insensitive one.
fn find<'a, T>(table: &'a [(&'static str, T)], key: &str) -> Option<&'a (&'static str, T)> {
    table
        .iter()
        .find(|(k, _)| *k == key)
        .or_else(|| table.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
}

fn key_string(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How a value is described in a type error: `string "abc"`, `a sequence`, ...
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", go_quote(s)),
        Value::Sequence(_) => "a sequence".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("tagged value {}", t.tag),
    }
}

/// A string setting; numbers and booleans become their text (etcd would refuse them).
fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, got {}", kind(other))),
    }
}

/// etcd's `SelectiveStringValue` for file keys: one of a fixed set.
fn choice(v: &Value, valid: &[&str]) -> Result<String, String> {
    let s = string(v)?;
    if !valid.contains(&s.as_str()) {
        let list: Vec<String> = valid.iter().map(|s| go_quote(s)).collect();
        return Err(format!("invalid value (valid values: {})", list.join(", ")));
    }
    Ok(s)
}

fn opt_string(v: &Value) -> Result<Option<String>, String> {
    let s = string(v)?;
    Ok((!s.is_empty()).then_some(s))
}

fn opt_path(v: &Value) -> Result<Option<PathBuf>, String> {
    Ok(opt_string(v)?.map(PathBuf::from))
}

fn boolean(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => parse_yaml11_bool(s)
            .ok_or_else(|| format!("expected a boolean (true or false), got {}", kind(v))),
        other => Err(format!(
            "expected a boolean (true or false), got {}",
            kind(other)
        )),
    }
}

/// An unsigned integer of `bits` bits; integral floats (`1e3`) count, as in Go's JSON.
fn uint(v: &Value, bits: u32) -> Result<u64, String> {
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let what = || format!("expected an unsigned integer, got {}", kind(v));
    let n = match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u,
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= max as f64 => f as u64,
            _ => return Err(what()),
        },
        _ => return Err(what()),
    };
    if n > max {
        return Err(format!("{n} is out of range (at most {max})"));
    }
    Ok(n)
}

fn int(v: &Value) -> Result<i64, String> {
    let what = || format!("expected an integer, got {}", kind(v));
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(i),
            (None, Some(f)) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                Ok(f as i64)
            }
            _ => Err(what()),
        },
        _ => Err(what()),
    }
}

/// Integer nanoseconds (etcd's form, Go's `time.Duration` in JSON) or a Go duration string.
fn duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => parse_go_duration(s).map_err(|e| e.message()),
        Value::Number(_) => {
            let ns = int(v).map_err(|_| {
                format!(
                    "expected integer nanoseconds or a duration such as \"5s\", got {}",
                    kind(v)
                )
            })?;
            u64::try_from(ns)
                .map(Duration::from_nanos)
                .map_err(|_| "negative durations are not allowed".to_string())
        }
        other => Err(format!(
            "expected integer nanoseconds or a duration such as \"5s\", got {}",
            kind(other)
        )),
    }
}

/// A list of strings: a YAML sequence (etcd's form) or a comma-separated string.
fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Sequence(items) => items.iter().map(string).collect(),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(s.split(',').map(str::to_string).collect()),
        other => Err(format!("expected a list of strings, got {}", kind(other))),
    }
}

/// A URL list: a comma-separated string (etcd's form) or a sequence; empty keeps the default.
fn urls(dst: &mut Vec<Url>, v: &Value) -> Result<(), String> {
    let joined = match v {
        Value::Sequence(_) => strings(v)?.join(","),
        _ => string(v)?,
    };
    if !joined.is_empty() {
        *dst = values::parse_url_list(&joined)?;
    }
    Ok(())
}

fn cors(dst: &mut Vec<String>, v: &Value) -> Result<(), String> {
    let s = string(v)?;
    if s.is_empty() {
        return Ok(());
    }
    if s == "*" {
        *dst = vec![s];
        return Ok(());
    }
    let list = values::parse_url_list(&s)?;
    let set: std::collections::BTreeSet<String> = list.iter().map(values::go_url_string).collect();
    *dst = set.into_iter().collect();
    Ok(())
}

fn host_whitelist(dst: &mut Vec<String>, v: &Value) -> Result<(), String> {
    let s = string(v)?;
    if !s.is_empty() {
        let set: std::collections::BTreeSet<&str> = s.split(',').collect();
        *dst = set.into_iter().map(str::to_string).collect();
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Peer,
}

/// A `*-transport-security` section; etcd replaces the TLS settings with the section's values.
fn security(st: &mut Staging, v: &Value, side: Side) -> Result<(), String> {
    let Value::Mapping(map) = v else {
        return Err(format!(
            "expected a mapping with cert-file, key-file, client-cert-auth, trusted-ca-file, \
             auto-tls; got {}",
            kind(v)
        ));
    };
    let section = match side {
        Side::Client => "client-transport-security",
        Side::Peer => "peer-transport-security",
    };
    for (k, v) in map {
        let key = key_string(k).unwrap_or_default();
        let Some((name, setter)) = find(TLS_KEYS, &key) else {
            st.warnings.push(format!(
                "unrecognized key {} in {section} of the config file is ignored (known: \
                 cert-file, key-file, client-cert-auth, trusted-ca-file, auto-tls)",
                go_quote(&key)
            ));
            continue;
        };
        if v.is_null() {
            continue;
        }
        let tls = match side {
            Side::Client => &mut st.cfg.client_tls,
            Side::Peer => &mut st.cfg.peer_tls,
        };
        setter(tls, v).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}
