//! etcd's command-line flags and their `ETCD_*` environment variables.
//!
//! Hand-written rather than clap because etcd's command line is Go's `flag` package, and users'
//! scripts depend on its quirks that clap cannot express: long flags with a single dash
//! (`-name x`), a value-taking flag consuming the next argument even when it starts with `-`,
//! booleans never consuming the next argument (`--enable-v2 false` leaves `false` as a stray
//! argument), parsing stopping at the first non-flag, Go's error texts and exit codes, and the
//! environment filling in only flags absent from the command line, with warnings about the rest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::values::{
    self, NumError, go_quote, parse_go_bool, parse_go_duration, parse_go_int, parse_go_uint,
};
use super::{ConfigError, Staging};

/// How a flag takes its value on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `--flag` means true; a value only with `=`.
    Bool,
    /// `--flag value` or `--flag=value`.
    Value,
    /// A flag from etcd 0.4/2.x that etcd still accepts and ignores with a warning; bool-like.
    Ignored,
}

pub(super) struct FlagDef {
    pub name: &'static str,
    pub kind: Kind,
    /// Applies one value; the error is the reason Go's flag package prints after
    /// `invalid value "v" for flag -name: `.
    pub set: fn(&mut Staging, &str) -> Result<(), String>,
}

fn set_bool(dst: &mut bool, v: &str) -> Result<(), String> {
    *dst = parse_go_bool(v).ok_or("parse error")?;
    Ok(())
}

fn set_uint(dst: &mut u64, v: &str) -> Result<(), String> {
    *dst = parse_go_uint(v, 64).map_err(|e| e.flag_reason().to_string())?;
    Ok(())
}

fn set_int(dst: &mut i64, v: &str) -> Result<(), String> {
    *dst = parse_go_int(v, 64).map_err(|e| e.flag_reason().to_string())?;
    Ok(())
}

fn set_duration(dst: &mut Duration, v: &str) -> Result<(), String> {
    *dst = parse_go_duration(v).map_err(|e| match e {
        values::DurationError::Invalid(_) => "parse error".to_string(),
        neg => neg.message(),
    })?;
    Ok(())
}

/// etcd's `UniqueURLs` flags treat an empty value as "leave as is".
fn set_urls(dst: &mut Vec<Url>, v: &str) -> Result<(), String> {
    if !v.is_empty() {
        *dst = values::parse_url_list(v)?;
    }
    Ok(())
}

fn set_opt_string(dst: &mut Option<String>, v: &str) -> Result<(), String> {
    *dst = (!v.is_empty()).then(|| v.to_string());
    Ok(())
}

fn set_opt_path(dst: &mut Option<PathBuf>, v: &str) -> Result<(), String> {
    *dst = (!v.is_empty()).then(|| PathBuf::from(v));
    Ok(())
}

/// etcd's `SelectiveStringValue`: one of a fixed set.
fn set_choice(dst: &mut String, v: &str, valid: &[&str]) -> Result<(), String> {
    if !valid.contains(&v) {
        let list: Vec<String> = valid.iter().map(|s| go_quote(s)).collect();
        return Err(format!("invalid value (valid values: {})", list.join(", ")));
    }
    *dst = v.to_string();
    Ok(())
}

/// etcd's `UniqueStringsValue`: comma-separated, deduplicated, sorted.
fn unique_strings(v: &str) -> Vec<String> {
    let set: BTreeSet<&str> = v.split(',').collect();
    set.into_iter().map(str::to_string).collect()
}

/// Every flag etcd 3.4's `etcd` accepts, in its source order.
#[rustfmt::skip]
pub(super) static FLAGS: &[FlagDef] = &[
    FlagDef { name: "config-file", kind: Kind::Value, set: |st, v| { st.config_file = v.to_string(); Ok(()) } },
    // Member.
    FlagDef { name: "data-dir", kind: Kind::Value, set: |st, v| { st.cfg.data_dir = PathBuf::from(v); Ok(()) } },
    FlagDef { name: "wal-dir", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.wal_dir, v) },
    FlagDef { name: "listen-peer-urls", kind: Kind::Value, set: |st, v| set_urls(&mut st.cfg.listen_peer_urls, v) },
    FlagDef { name: "listen-client-urls", kind: Kind::Value, set: |st, v| set_urls(&mut st.cfg.listen_client_urls, v) },
    FlagDef { name: "listen-metrics-urls", kind: Kind::Value, set: |st, v| set_urls(&mut st.cfg.listen_metrics_urls, v) },
    FlagDef { name: "max-snapshots", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.max_snapshots, v) },
    FlagDef { name: "max-wals", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.max_wals, v) },
    FlagDef { name: "name", kind: Kind::Value, set: |st, v| { st.cfg.name = v.to_string(); Ok(()) } },
    FlagDef { name: "snapshot-count", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.snapshot_count, v) },
    FlagDef { name: "heartbeat-interval", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.heartbeat_interval_ms, v) },
    FlagDef { name: "election-timeout", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.election_timeout_ms, v) },
    FlagDef { name: "initial-election-tick-advance", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.initial_election_tick_advance, v) },
    FlagDef { name: "quota-backend-bytes", kind: Kind::Value, set: |st, v| set_int(&mut st.cfg.quota_backend_bytes, v) },
    FlagDef { name: "backend-batch-interval", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.backend_batch_interval, v) },
    FlagDef { name: "backend-batch-limit", kind: Kind::Value, set: |st, v| set_int(&mut st.cfg.backend_batch_limit, v) },
    FlagDef { name: "max-txn-ops", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.max_txn_ops, v) },
    FlagDef { name: "max-request-bytes", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.max_request_bytes, v) },
    FlagDef { name: "grpc-keepalive-min-time", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.grpc_keepalive_min_time, v) },
    FlagDef { name: "grpc-keepalive-interval", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.grpc_keepalive_interval, v) },
    FlagDef { name: "grpc-keepalive-timeout", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.grpc_keepalive_timeout, v) },
    FlagDef {
        name: "max-concurrent-streams",
        kind: Kind::Value,
        // etcd's own uint32 flag type reports strconv's error rather than the flag package's.
        set: |st, v| {
            let n = parse_go_uint(v, 32).map_err(|e: NumError| e.strconv_reason(v))?;
            st.cfg.max_concurrent_streams = u32::try_from(n).map_err(|_| NumError::Range.strconv_reason(v))?;
            Ok(())
        },
    },
    // Clustering.
    FlagDef { name: "initial-advertise-peer-urls", kind: Kind::Value, set: |st, v| set_urls(&mut st.cfg.initial_advertise_peer_urls, v) },
    FlagDef { name: "advertise-client-urls", kind: Kind::Value, set: |st, v| set_urls(&mut st.cfg.advertise_client_urls, v) },
    FlagDef { name: "discovery", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.discovery, v) },
    FlagDef { name: "discovery-fallback", kind: Kind::Value, set: |st, v| set_choice(&mut st.discovery_fallback, v, &["exit", "proxy"]) },
    FlagDef { name: "discovery-proxy", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.discovery_proxy, v) },
    FlagDef { name: "discovery-srv", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.discovery_srv, v) },
    FlagDef { name: "discovery-srv-name", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.discovery_srv_name, v) },
    // etcd 3.6's v3 discovery.
    FlagDef { name: "discovery-token", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.v3_discovery.token, v) },
    FlagDef { name: "discovery-endpoints", kind: Kind::Value, set: |st, v| { st.cfg.v3_discovery.endpoints = v.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect(); Ok(()) } },
    FlagDef { name: "discovery-dial-timeout", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.v3_discovery.dial_timeout, v) },
    FlagDef { name: "discovery-request-timeout", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.v3_discovery.request_timeout, v) },
    FlagDef { name: "discovery-keepalive-time", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.v3_discovery.keepalive_time, v) },
    FlagDef { name: "discovery-keepalive-timeout", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.v3_discovery.keepalive_timeout, v) },
    FlagDef { name: "discovery-insecure-transport", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.v3_discovery.insecure_transport, v) },
    FlagDef { name: "discovery-insecure-skip-tls-verify", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.v3_discovery.insecure_skip_tls_verify, v) },
    FlagDef { name: "discovery-cert", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.v3_discovery.cert, v) },
    FlagDef { name: "discovery-key", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.v3_discovery.key, v) },
    FlagDef { name: "discovery-cacert", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.v3_discovery.cacert, v) },
    FlagDef { name: "discovery-user", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.v3_discovery.user, v) },
    FlagDef { name: "discovery-password", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.v3_discovery.password, v) },
    FlagDef { name: "initial-cluster", kind: Kind::Value, set: |st, v| { st.initial_cluster = v.to_string(); Ok(()) } },
    FlagDef { name: "initial-cluster-token", kind: Kind::Value, set: |st, v| { st.cfg.initial_cluster_token = v.to_string(); Ok(()) } },
    FlagDef { name: "initial-cluster-state", kind: Kind::Value, set: |st, v| set_choice(&mut st.initial_cluster_state, v, &["existing", "new"]) },
    FlagDef { name: "strict-reconfig-check", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.strict_reconfig_check, v) },
    FlagDef { name: "enable-v2", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.enable_v2, v) },
    FlagDef { name: "enable-ui", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.enable_ui, v) },
    FlagDef { name: "pre-vote", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.pre_vote, v) },
    // v2 proxy.
    FlagDef { name: "proxy", kind: Kind::Value, set: |st, v| set_choice(&mut st.proxy, v, &["off", "on", "readonly"]) },
    FlagDef { name: "proxy-failure-wait", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.proxy_failure_wait_ms, v) },
    FlagDef { name: "proxy-refresh-interval", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.proxy_refresh_interval_ms, v) },
    FlagDef { name: "proxy-dial-timeout", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.proxy_dial_timeout_ms, v) },
    FlagDef { name: "proxy-write-timeout", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.proxy_write_timeout_ms, v) },
    FlagDef { name: "proxy-read-timeout", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.proxy_read_timeout_ms, v) },
    // Security.
    FlagDef { name: "cert-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.client_tls.cert_file, v) },
    FlagDef { name: "key-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.client_tls.key_file, v) },
    FlagDef { name: "client-cert-auth", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.client_tls.client_cert_auth, v) },
    FlagDef { name: "client-crl-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.client_tls.crl_file, v) },
    FlagDef { name: "client-cert-allowed-hostname", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.client_tls.allowed_hostname, v) },
    FlagDef { name: "trusted-ca-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.client_tls.trusted_ca_file, v) },
    FlagDef { name: "auto-tls", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.client_tls.auto_tls, v) },
    FlagDef { name: "peer-cert-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.peer_tls.cert_file, v) },
    FlagDef { name: "peer-key-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.peer_tls.key_file, v) },
    FlagDef { name: "peer-client-cert-auth", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.peer_tls.client_cert_auth, v) },
    FlagDef { name: "peer-trusted-ca-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.peer_tls.trusted_ca_file, v) },
    FlagDef { name: "peer-auto-tls", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.peer_tls.auto_tls, v) },
    FlagDef { name: "peer-crl-file", kind: Kind::Value, set: |st, v| set_opt_path(&mut st.cfg.peer_tls.crl_file, v) },
    FlagDef { name: "peer-cert-allowed-cn", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.peer_tls.allowed_cn, v) },
    FlagDef { name: "peer-cert-allowed-hostname", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.peer_tls.allowed_hostname, v) },
    FlagDef {
        name: "cipher-suites",
        kind: Kind::Value,
        set: |st, v| {
            st.cfg.cipher_suites = if v.is_empty() { Vec::new() } else { v.split(',').map(str::to_string).collect() };
            Ok(())
        },
    },
    FlagDef { name: "experimental-peer-skip-client-san-verification", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.peer_tls.skip_client_san_verification, v) },
    FlagDef { name: "cors", kind: Kind::Value, set: |st, v| set_cors(&mut st.cfg.cors, v) },
    FlagDef {
        name: "host-whitelist",
        kind: Kind::Value,
        // etcd would store [""] for an empty value and then reject every host; its help says
        // empty allows all, so empty means allow all here.
        set: |st, v| {
            st.cfg.host_whitelist = if v.is_empty() { Vec::new() } else { unique_strings(v) };
            Ok(())
        },
    },
    // Logging.
    FlagDef { name: "logger", kind: Kind::Value, set: |st, v| { st.logger = v.to_string(); Ok(()) } },
    FlagDef { name: "log-output", kind: Kind::Value, set: |st, v| { st.log_output_deprecated = unique_strings(v); Ok(()) } },
    FlagDef { name: "log-outputs", kind: Kind::Value, set: |st, v| { st.cfg.log_outputs = unique_strings(v); Ok(()) } },
    FlagDef { name: "debug", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.debug, v) },
    FlagDef { name: "log-level", kind: Kind::Value, set: |st, v| { st.log_level = v.to_string(); Ok(()) } },
    FlagDef { name: "log-package-levels", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.log_package_levels, v) },
    // Version.
    FlagDef { name: "version", kind: Kind::Bool, set: |st, v| set_bool(&mut st.print_version, v) },
    FlagDef { name: "auto-compaction-retention", kind: Kind::Value, set: |st, v| { st.auto_compaction_retention = v.to_string(); Ok(()) } },
    FlagDef { name: "auto-compaction-mode", kind: Kind::Value, set: |st, v| { st.auto_compaction_mode = v.to_string(); Ok(()) } },
    // Profiling, metrics, auth, gateway.
    FlagDef { name: "enable-pprof", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.enable_pprof, v) },
    FlagDef { name: "metrics", kind: Kind::Value, set: |st, v| { st.cfg.metrics = v.to_string(); Ok(()) } },
    FlagDef { name: "auth-token", kind: Kind::Value, set: |st, v| { st.cfg.auth_token = v.to_string(); Ok(()) } },
    FlagDef { name: "bcrypt-cost", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.bcrypt_cost, v) },
    FlagDef { name: "auth-token-ttl", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.auth_token_ttl_secs, v) },
    FlagDef { name: "enable-grpc-gateway", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.enable_grpc_gateway, v) },
    // Experimental.
    FlagDef { name: "experimental-initial-corrupt-check", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.experimental_initial_corrupt_check, v) },
    FlagDef { name: "experimental-corrupt-check-time", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.experimental_corrupt_check_time, v) },
    FlagDef { name: "experimental-snapshot-catchup-entries", kind: Kind::Value, set: |st, v| set_uint(&mut st.cfg.experimental_snapshot_catchup_entries, v) },
    FlagDef { name: "experimental-enable-v2v3", kind: Kind::Value, set: |st, v| set_opt_string(&mut st.cfg.experimental_enable_v2v3, v) },
    FlagDef { name: "experimental-backend-bbolt-freelist-type", kind: Kind::Value, set: |st, v| { st.cfg.experimental_backend_bbolt_freelist_type = v.to_string(); Ok(()) } },
    FlagDef { name: "experimental-enable-lease-checkpoint", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.experimental_enable_lease_checkpoint, v) },
    FlagDef { name: "experimental-enable-lease-checkpoint-persist", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.experimental_enable_lease_checkpoint_persist, v) },
    FlagDef { name: "experimental-compaction-batch-limit", kind: Kind::Value, set: |st, v| set_int(&mut st.cfg.experimental_compaction_batch_limit, v) },
    FlagDef { name: "experimental-watch-progress-notify-interval", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.experimental_watch_progress_notify_interval, v) },
    FlagDef { name: "experimental-warning-apply-duration", kind: Kind::Value, set: |st, v| set_duration(&mut st.cfg.experimental_warning_apply_duration, v) },
    // Unsafe.
    FlagDef { name: "unsafe-no-fsync", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.unsafe_no_fsync, v) },
    FlagDef { name: "force-new-cluster", kind: Kind::Bool, set: |st, v| set_bool(&mut st.cfg.force_new_cluster, v) },
    // Ignored (etcd 2.x flags), accepted with a warning.
    FlagDef { name: "cluster-active-size", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "cluster-remove-delay", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "cluster-sync-interval", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "config", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "force", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "max-result-buffer", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "max-retry-attempts", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "peer-heartbeat-interval", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "peer-election-timeout", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "retry-interval", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "snapshot", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "v", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "vv", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "test.coverprofile", kind: Kind::Ignored, set: |_, _| Ok(()) },
    FlagDef { name: "test.outputdir", kind: Kind::Ignored, set: |_, _| Ok(()) },
];

/// etcd's `cors` flag: `*`, or a list of origins checked as URLs.
fn set_cors(dst: &mut Vec<String>, v: &str) -> Result<(), String> {
    if v == "*" {
        *dst = vec!["*".to_string()];
        return Ok(());
    }
    let urls = values::parse_url_list(v)?;
    let set: BTreeSet<String> = urls.iter().map(values::go_url_string).collect();
    *dst = set.into_iter().collect();
    Ok(())
}

pub(super) fn lookup(name: &str) -> Option<&'static FlagDef> {
    FLAGS.iter().find(|f| f.name == name)
}

/// etcd's `flags.FlagToEnv`: `ETCD_` + upper case, `-` as `_`.
pub(super) fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

fn apply(st: &mut Staging, f: &'static FlagDef, value: &str) -> Result<(), String> {
    if f.kind == Kind::Ignored {
        st.warnings.push(format!(
            "flag \"-{}\" is no longer supported - ignoring; remove it",
            f.name
        ));
        return Ok(());
    }
    (f.set)(st, value)?;
    st.set.insert(f.name);
    Ok(())
}

pub(super) enum CommandLine {
    /// `-h`/`--help` seen before any error.
    Help,
    Flags(Flags),
}

pub(super) struct Flags {
    /// Flags given on the command line (not by the environment).
    pub set: BTreeSet<&'static str>,
    /// Arguments after the flags; etcd refuses any.
    pub positional: Vec<String>,
}

/// Go's `FlagSet.Parse` over `args`, applying each flag to `st` as it is seen.
pub(super) fn parse_command_line(
    st: &mut Staging,
    args: &[OsString],
) -> Result<CommandLine, ConfigError> {
    let mut args = args.iter();
    let mut set = BTreeSet::new();
    let text = |a: &OsString| -> Result<String, ConfigError> {
        a.to_str()
            .map(str::to_string)
            .ok_or_else(|| ConfigError::NotUtf8(a.to_string_lossy().into_owned()))
    };
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        let s = text(arg)?;
        if s.len() < 2 || !s.starts_with('-') {
            positional.push(s);
            break;
        }
        let body = if let Some(rest) = s.strip_prefix("--") {
            if rest.is_empty() {
                // "--" ends the flags.
                break;
            }
            rest
        } else {
            &s[1..]
        };
        if body.starts_with('-') || body.starts_with('=') {
            return Err(ConfigError::BadFlagSyntax(s.clone()));
        }
        let (name, inline) = match body.find('=') {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let Some(f) = lookup(name) else {
            if name == "help" || name == "h" {
                return Ok(CommandLine::Help);
            }
            return Err(ConfigError::UnknownFlag(name.to_string()));
        };
        match f.kind {
            Kind::Bool | Kind::Ignored => {
                let value = inline.unwrap_or("true");
                apply(st, f, value).map_err(|_| ConfigError::InvalidBool {
                    flag: f.name,
                    value: value.to_string(),
                })?;
            }
            Kind::Value => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => match args.next() {
                        Some(next) => text(next)?,
                        None => return Err(ConfigError::MissingArgument(f.name)),
                    },
                };
                apply(st, f, &value).map_err(|reason| ConfigError::InvalidFlagValue {
                    flag: f.name,
                    value: value.clone(),
                    reason,
                })?;
            }
        }
        set.insert(f.name);
    }
    for rest in args {
        positional.push(text(rest)?);
    }
    Ok(CommandLine::Flags(Flags { set, positional }))
}

/// The process environment, as given to [`super::parse`].
pub(super) struct Env {
    /// In the order given, for warnings.
    vars: Vec<(String, Option<String>)>,
    /// Last value wins, as with a real environment.
    map: HashMap<String, Option<String>>,
}

impl Env {
    pub(super) fn new(env: impl IntoIterator<Item = (OsString, OsString)>) -> Env {
        let vars: Vec<(String, Option<String>)> = env
            .into_iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.into_string().ok()))
            .collect();
        let map = vars.iter().cloned().collect();
        Env { vars, map }
    }

    /// The value, if set and valid UTF-8 (a non-UTF-8 value is an error where it is used).
    pub(super) fn get(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned().flatten()
    }

    pub(super) fn etcd_vars(&self) -> impl Iterator<Item = &str> {
        self.vars
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("ETCD_"))
    }
}

/// etcd's `flags.SetFlagsFromEnv`: every flag not on the command line takes its `ETCD_*`
/// variable if set and non-empty; then warnings for variables that were shadowed by a flag or
/// name no flag.
pub(super) fn apply_env(
    st: &mut Staging,
    cmdline: &BTreeSet<&'static str>,
    env: &Env,
) -> Result<(), ConfigError> {
    let mut names: Vec<&'static str> = FLAGS.iter().map(|f| f.name).collect();
    // Go visits flags in lexical order; when several variables are bad etcd reports the last.
    names.sort_unstable();
    let mut used = BTreeSet::new();
    let mut shadowed = BTreeMap::new();
    let mut last_err = None;
    for name in names {
        let key = env_name(name);
        if cmdline.contains(name) {
            shadowed.insert(key, name);
            continue;
        }
        let Some(raw) = env.map.get(&key) else {
            continue;
        };
        let Some(value) = raw else {
            used.insert(key.clone());
            last_err = Some(ConfigError::InvalidEnv {
                var: key,
                value: String::new(),
                reason: "value is not valid UTF-8".to_string(),
            });
            continue;
        };
        if value.is_empty() {
            continue;
        }
        used.insert(key.clone());
        let Some(f) = lookup(name) else { continue };
        match apply(st, f, value) {
            Ok(()) => st.notices.push(format!(
                "recognized and used environment variable {key}={}",
                values::one_line(value)
            )),
            Err(reason) => {
                last_err = Some(ConfigError::InvalidEnv {
                    var: key,
                    value: value.clone(),
                    reason,
                });
            }
        }
    }
    for (key, value) in &env.vars {
        if used.contains(key) {
            continue;
        }
        let shown = values::one_line(value.as_deref().unwrap_or(""));
        if let Some(flag) = shadowed.get(key) {
            // etcd 3.4 refuses to start here, with this text; later versions only warn, which
            // we follow, in 3.4's words (naming the flag too).
            st.warnings.push(format!(
                "conflicting environment variable {key:?} is shadowed by corresponding \
                 command-line flag --{flag} (either unset environment variable or disable flag)"
            ));
        } else if key.starts_with("ETCD_") {
            st.warnings.push(format!(
                "unrecognized environment variable {}={shown}; it names no etcd flag",
                values::one_line(key)
            ));
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
