//! Validation, in etcd's order and with its messages: `embed.Config.Validate` (including the
//! logging checks of `setupLogging`), then the values etcd only checks when the server starts,
//! reported here so a bad value fails before anything touches the disk.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::cluster::{derive_initial_cluster, parse_initial_cluster};
use super::values::{self, go_quote, go_quote_list, go_url_string, one_line};
use super::{
    AutoCompaction, ClusterState, Config, ConfigError, DEFAULT_INITIAL_CLUSTER, DEFAULT_LOG_OUTPUT,
    DEFAULT_NAME, DiscoveryFallback, LogLevel, Logger, MAX_ELECTION_TIMEOUT_MS,
    MAX_RECOMMENDED_QUOTA_BACKEND_BYTES, ProxyMode, Staging,
};

/// etcd's `embed.Config.Validate`, in its order, so the first error reported is etcd's.
/// `allow_unset_advertise` is etcdmain's exception for a possible proxy.
pub(super) fn validate(st: &mut Staging, allow_unset_advertise: bool) -> Result<(), ConfigError> {
    setup_logging(st)?;
    let cfg = &st.cfg;
    check_bind_urls(&cfg.listen_peer_urls)?;
    check_bind_urls(&cfg.listen_client_urls)?;
    check_bind_urls(&cfg.listen_metrics_urls)?;
    check_host_urls(
        "--initial-advertise-peer-urls",
        &cfg.initial_advertise_peer_urls,
    )?;
    check_host_urls("--advertise-client-urls", &cfg.advertise_client_urls)?;

    let bootstrap_sources = [
        cfg.discovery.is_some() || cfg.v3_discovery.is_set(),
        !st.initial_cluster.is_empty(),
        cfg.discovery_srv.is_some(),
    ];
    // etcd 3.6's checks of its v3 discovery flags.
    if (cfg.discovery.is_some() || cfg.discovery_proxy.is_some()) && cfg.v3_discovery.is_set() {
        return Err(ConfigError::Invalid(
            "both v2 discovery settings (discovery, discovery-proxy) and v3 discovery settings \
             (discovery-token, discovery-endpoints, discovery-cert, discovery-key, \
             discovery-cacert, discovery-user, discovery-password) are set, please use either v2 \
             or v3 discovery settings"
                .to_string(),
        ));
    }
    let v3 = &cfg.v3_discovery;
    if v3.is_set() && (v3.token.is_none() || v3.endpoints.is_empty()) {
        return Err(ConfigError::Invalid(
            "v3 discovery needs both --discovery-token and --discovery-endpoints".to_string(),
        ));
    }
    if st.initial_cluster_state != "new" && st.initial_cluster_state != "existing" {
        return Err(ConfigError::Invalid(format!(
            "unexpected clusterState {} (must be \"new\" or \"existing\")",
            go_quote(&st.initial_cluster_state)
        )));
    }
    if bootstrap_sources.iter().filter(|b| **b).count() > 1 {
        return Err(ConfigError::Invalid(
            "multiple discovery or bootstrap flags are set. Choose one of \"initial-cluster\", \
             \"discovery\" or \"discovery-srv\""
                .to_string(),
        ));
    }
    let (tick, election) = (cfg.heartbeat_interval_ms, cfg.election_timeout_ms);
    if tick == 0 {
        return Err(ConfigError::Invalid(format!(
            "--heartbeat-interval must be >0 (set to {tick}ms)"
        )));
    }
    if election == 0 {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout must be >0 (set to {election}ms)"
        )));
    }
    if tick.saturating_mul(5) > election {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as \
             --heartbeat-interval[{tick}ms]"
        )));
    }
    if election > MAX_ELECTION_TIMEOUT_MS {
        return Err(ConfigError::Invalid(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than \
             {MAX_ELECTION_TIMEOUT_MS}ms"
        )));
    }
    if !cfg.listen_client_urls.is_empty()
        && cfg.advertise_client_urls.is_empty()
        && !allow_unset_advertise
    {
        return Err(ConfigError::Invalid(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .to_string(),
        ));
    }
    match st.auto_compaction_mode.as_str() {
        "" | "periodic" | "revision" => {}
        other => {
            return Err(ConfigError::Invalid(format!(
                "unknown auto-compaction-mode {} (must be \"periodic\" or \"revision\")",
                go_quote(other)
            )));
        }
    }
    if cfg.experimental_enable_lease_checkpoint && !cfg.experimental_enable_lease_checkpoint_persist
    {
        st.warnings.push(
            "Detected that checkpointing is enabled without persistence. Consider enabling \
             experimental-enable-lease-checkpoint-persist"
                .to_string(),
        );
    }
    if cfg.experimental_enable_lease_checkpoint_persist && !cfg.experimental_enable_lease_checkpoint
    {
        return Err(ConfigError::Invalid(
            "setting experimental-enable-lease-checkpoint-persist requires \
             experimental-enable-lease-checkpoint"
                .to_string(),
        ));
    }
    Ok(())
}

/// The checks of etcd 3.4's `setupLogging`, which runs first in validation; etcd panics on an
/// unknown log level, we report it.
fn setup_logging(st: &mut Staging) -> Result<(), ConfigError> {
    let deprecated = &st.log_output_deprecated;
    let outputs = &st.cfg.log_outputs;
    if deprecated.len() != outputs.len() {
        if deprecated.len() > outputs.len() {
            st.warnings.push(
                "'--log-output' flag has been deprecated! Please use '--log-outputs'!".into(),
            );
            st.cfg.log_outputs = deprecated.clone();
        }
    } else {
        if deprecated.len() > 1 {
            return Err(ConfigError::Invalid(
                "both '--log-output' and '--log-outputs' are set; only set '--log-outputs'".into(),
            ));
        }
        if deprecated.is_empty() {
            return Err(ConfigError::Invalid(
                "either '--log-output' or '--log-outputs' flag must be set".into(),
            ));
        }
        if deprecated == outputs && deprecated[0] != DEFAULT_LOG_OUTPUT {
            return Err(ConfigError::Invalid(format!(
                "'--log-output={}' and '--log-outputs={}' are incompatible; only set --log-outputs",
                go_quote_list(deprecated),
                go_quote_list(outputs)
            )));
        }
        if deprecated.as_slice() != [DEFAULT_LOG_OUTPUT] {
            st.warnings.push(format!(
                "Deprecated '--log-output' flag is set to {} and ignored; use '--log-outputs' \
                 instead",
                go_quote_list(deprecated)
            ));
        }
    }
    if st.cfg.debug {
        st.warnings.push(
            "Deprecated '--debug' flag is set to true; use '--log-level=debug' instead".into(),
        );
        if st.log_level != "debug" {
            st.warnings.push(format!(
                "Deprecated '--debug' flag is set to true with inconsistent '--log-level={}' \
                 flag; remove '--debug'",
                one_line(&st.log_level)
            ));
        }
    }
    if st.logger == "capnslog" {
        st.warnings.push(
            "Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead".into(),
        );
    }
    if let Some(levels) = &st.cfg.log_package_levels {
        st.warnings.push(format!(
            "Deprecated '--log-package-levels={}' flag is set; use '--logger=zap' flag instead",
            one_line(levels)
        ));
    }
    let level = LogLevel::parse(&st.log_level);
    let bad_level = || {
        ConfigError::Invalid(format!(
            "invalid --log-level {}: only supports debug, info, warn, error, panic, or fatal",
            go_quote(&st.log_level)
        ))
    };
    let outputs = &st.cfg.log_outputs;
    match st.logger.as_str() {
        "capnslog" => {
            // etcd ignores --log-level under capnslog with --debug.
            st.cfg.log_level = match (level, st.cfg.debug) {
                (Some(l), _) => l,
                (None, true) => LogLevel::Debug,
                (None, false) => return Err(bad_level()),
            };
            st.cfg.logger = Logger::Capnslog;
            if outputs.len() != 1 {
                return Err(ConfigError::Invalid(format!(
                    "--logger=capnslog supports only 1 value in '--log-outputs', got {}",
                    go_quote_list(outputs)
                )));
            }
            if !matches!(outputs[0].as_str(), "default" | "stderr" | "stdout") {
                return Err(ConfigError::Invalid(format!(
                    "unknown log-output {} (only supports \"default\", \"stderr\", \"stdout\")",
                    go_quote(&outputs[0])
                )));
            }
        }
        "zap" => {
            if outputs.is_empty() {
                st.cfg.log_outputs = vec![DEFAULT_LOG_OUTPUT.to_string()];
            }
            let outputs = &st.cfg.log_outputs;
            if outputs.len() > 1 && outputs.iter().any(|o| o == DEFAULT_LOG_OUTPUT) {
                return Err(ConfigError::Invalid(format!(
                    "multi logoutput for {} is not supported yet",
                    go_quote(DEFAULT_LOG_OUTPUT)
                )));
            }
            if outputs.iter().any(|o| o == "systemd/journal") && outputs.len() > 1 {
                return Err(ConfigError::Invalid(format!(
                    "running with systemd/journal but other '--log-outputs' values ({}) are \
                     configured; use only 'systemd/journal'",
                    go_quote_list(outputs)
                )));
            }
            st.cfg.log_level = level.ok_or_else(bad_level)?;
            st.cfg.logger = Logger::Zap;
        }
        other => {
            return Err(ConfigError::Invalid(format!(
                "unknown logger option {} (must be \"zap\" or \"capnslog\")",
                go_quote(other)
            )));
        }
    }
    Ok(())
}

/// etcd's `checkBindURLs`: listen URLs must name an IP address or localhost.
fn check_bind_urls(urls: &[Url]) -> Result<(), ConfigError> {
    for u in urls {
        if matches!(u.scheme(), "unix" | "unixs") {
            continue;
        }
        match u.host() {
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {}
            Some(url::Host::Domain("localhost")) => {}
            // Non-special schemes keep IP hosts as opaque strings; none reach here, but check.
            Some(url::Host::Domain(d)) if d.parse::<std::net::IpAddr>().is_ok() => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "expected IP in URL for binding ({})",
                    go_url_string(u)
                )));
            }
        }
    }
    Ok(())
}

/// etcd's `checkHostURLs`: advertised URLs need a host.
fn check_host_urls(flag: &str, urls: &[Url]) -> Result<(), ConfigError> {
    for u in urls {
        if u.host_str().is_none_or(str::is_empty) {
            let all: Vec<String> = urls.iter().map(go_url_string).collect();
            return Err(ConfigError::Invalid(format!(
                "{flag} {} must be \"host:port\" (unexpected empty host ({}))",
                go_quote(&all.join(",")),
                go_url_string(u)
            )));
        }
    }
    Ok(())
}

/// The steps etcd takes after validation (`etcdmain/etcd.go`, `embed.StartEtcd`): derive the
/// initial cluster from the name, default the data dir, and parse the values etcd parses only
/// when starting (reported here so a bad value fails before anything touches the disk).
pub(super) fn resolve(st: &mut Staging) -> Result<Config, ConfigError> {
    let mut cfg = st.cfg.clone();
    cfg.initial_cluster_state = match st.initial_cluster_state.as_str() {
        "existing" => ClusterState::Existing,
        _ => ClusterState::New,
    };
    cfg.discovery_fallback = match st.discovery_fallback.as_str() {
        "exit" => DiscoveryFallback::Exit,
        _ => DiscoveryFallback::Proxy,
    };
    cfg.proxy = match st.proxy.as_str() {
        "on" => ProxyMode::On,
        "readonly" => ProxyMode::Readonly,
        _ => ProxyMode::Off,
    };

    // etcd compares the raw flag with the default string, then re-derives it from the name.
    if cfg.name != DEFAULT_NAME && st.initial_cluster == DEFAULT_INITIAL_CLUSTER {
        cfg.initial_cluster = derive_initial_cluster(&cfg);
    } else {
        cfg.initial_cluster = parse_initial_cluster(&st.initial_cluster)?;
    }

    if cfg.data_dir.as_os_str().is_empty() {
        cfg.data_dir = PathBuf::from(format!("{}.etcd", cfg.name));
        st.warnings.push(format!(
            "no data-dir provided, using default data-dir ./{}; set --data-dir to choose one",
            one_line(&cfg.data_dir.to_string_lossy())
        ));
    }

    cfg.auto_compaction =
        parse_auto_compaction(&st.auto_compaction_mode, &st.auto_compaction_retention)?;

    if !(4..=31).contains(&cfg.bcrypt_cost) {
        st.warnings.push(format!(
            "--bcrypt-cost {} is outside 4..=31; using the default cost 10",
            cfg.bcrypt_cost
        ));
    }
    if let Some(q) = cfg.quota_backend_bytes_effective()
        && q > MAX_RECOMMENDED_QUOTA_BACKEND_BYTES
    {
        st.warnings.push(format!(
            "--quota-backend-bytes {q} exceeds the maximum recommended quota of \
             {MAX_RECOMMENDED_QUOTA_BACKEND_BYTES} bytes; lower it unless you know the backend \
             copes"
        ));
    }
    Ok(cfg)
}

/// etcd's `parseCompactionRetention`: a non-negative integer is hours (periodic) or revisions;
/// anything else must be a Go duration.
fn parse_auto_compaction(mode: &str, retention: &str) -> Result<AutoCompaction, ConfigError> {
    let retention = if retention.is_empty() { "0" } else { retention };
    // Go's strconv.Atoi: decimal with an optional sign.
    if let Ok(n) = retention.parse::<i64>()
        && let Ok(n) = u64::try_from(n)
    {
        return Ok(match mode {
            "revision" => AutoCompaction::Revision(n),
            "periodic" => AutoCompaction::Periodic(Duration::from_secs(n.saturating_mul(3600))),
            // etcd: an empty mode with a number leaves compaction off.
            _ => AutoCompaction::Periodic(Duration::ZERO),
        });
    }
    let d = values::parse_go_duration(retention).map_err(|e| {
        ConfigError::Invalid(format!(
            "error parsing CompactionRetention: invalid --auto-compaction-retention {}: {}",
            go_quote(retention),
            e.message()
        ))
    })?;
    match mode {
        "periodic" => Ok(AutoCompaction::Periodic(d)),
        // etcd takes the duration's nanoseconds as the revision count.
        "revision" => Ok(AutoCompaction::Revision(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        )),
        other => Err(ConfigError::Invalid(format!(
            "unsupported compaction mode {}",
            go_quote(other)
        ))),
    }
}
