//! The systemd unit (`deploy/systemd/etcd.service`) and its example environment file
//! (`deploy/systemd/etcd.conf`): the unit waits for etcd's READY=1 and takes all configuration
//! from the file; every variable in the file, set or commented out, names an etcd 3.4 flag, so
//! none is silently ignored; the member it describes can start under the unit.

mod common;

use std::collections::BTreeMap;

const UNIT: &str = "deploy/systemd/etcd.service";
const ENV_FILE: &str = "deploy/systemd/etcd.conf";

/// A unit file's settings: section → key → values in order (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Reads a unit file as systemd does, for what we write: `[Section]` headers, `Key=Value`
/// lines, `#` and `;` comments. Continuation lines are refused rather than misread.
fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{UNIT}:{}: continuation lines are not supported by this check",
            n + 1
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            panic!("{UNIT}:{}: not a Key=Value line: {line}", n + 1);
        };
        let Some(section) = &section else {
            panic!("{UNIT}:{}: setting outside a section", n + 1);
        };
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    unit
}

/// The single value of `[section] key`.
fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match unit
        .get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
    {
        Some([value]) => value,
        Some(values) => panic!("{UNIT}: [{section}] {key} is set {} times", values.len()),
        None => panic!("{UNIT}: [{section}] {key} is not set"),
    }
}

/// One `KEY=VALUE` line of the environment file.
struct Assignment {
    line: usize,
    key: String,
    value: String,
    /// Written as a comment (`# ETCD_X=...`), for the reader to uncomment.
    commented: bool,
}

/// The environment file's assignments, set and commented out. Every line that is not a comment
/// must be an assignment; a comment that reads `# ETCD_...=` is a commented-out one.
fn parse_env_file(text: &str) -> Vec<Assignment> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let (body, commented) = match line.strip_prefix('#') {
            Some(rest) => (rest.trim_start(), true),
            None => (line, false),
        };
        let assignment = body.split_once('=').filter(|(key, _)| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        match assignment {
            Some((key, value)) => out.push(Assignment {
                line: n + 1,
                key: key.to_string(),
                // systemd drops one pair of surrounding quotes.
                value: value.trim_matches('"').to_string(),
                commented,
            }),
            None if commented => {}
            None => panic!("{ENV_FILE}:{}: not a KEY=VALUE line: {raw}", n + 1),
        }
    }
    out
}

/// The variables the file sets (not commented out), each at most once.
fn set_variables(assignments: &[Assignment]) -> BTreeMap<&str, &str> {
    let mut set = BTreeMap::new();
    for a in assignments.iter().filter(|a| !a.commented) {
        let before = set.insert(a.key.as_str(), a.value.as_str());
        assert!(
            before.is_none(),
            "{ENV_FILE}:{}: {} is set twice",
            a.line,
            a.key
        );
    }
    set
}

#[test]
fn unit_waits_for_ready_and_reads_the_environment_file() {
    let unit = parse_unit(&common::read(UNIT));
    assert_eq!(one(&unit, "Service", "Type"), "notify");
    assert_eq!(
        one(&unit, "Service", "EnvironmentFile"),
        "-/etc/etcd/etcd.conf"
    );
    // No flags: a flag set together with its ETCD_* variable stops etcd 3.4 from starting.
    assert_eq!(one(&unit, "Service", "ExecStart"), "/usr/local/bin/etcd");
    // A new cluster's first member is ready only when its peers have started: no timeout.
    assert_eq!(one(&unit, "Service", "TimeoutStartSec"), "0");
    assert_eq!(one(&unit, "Service", "User"), "etcd");
    assert_eq!(one(&unit, "Service", "Restart"), "on-failure");
    assert_eq!(one(&unit, "Service", "LimitNOFILE"), "65536");
    assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");
}

#[test]
fn environment_file_names_only_etcd_flags() {
    let variables = common::etcd_variables();
    let assignments = parse_env_file(&common::read(ENV_FILE));
    for a in &assignments {
        assert!(
            variables.contains(&a.key),
            "{ENV_FILE}:{}: {} names no etcd 3.4 flag (ETCD_ + the flag in upper case, `-` as \
             `_`)",
            a.line,
            a.key
        );
    }
    let set = set_variables(&assignments);
    for required in [
        "ETCD_NAME",
        "ETCD_DATA_DIR",
        "ETCD_LISTEN_PEER_URLS",
        "ETCD_LISTEN_CLIENT_URLS",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        "ETCD_ADVERTISE_CLIENT_URLS",
        "ETCD_INITIAL_CLUSTER",
        "ETCD_INITIAL_CLUSTER_TOKEN",
        "ETCD_INITIAL_CLUSTER_STATE",
    ] {
        assert!(
            set.contains_key(required),
            "{ENV_FILE}: {required} is not set"
        );
    }
    // The TLS and discovery settings are there to be uncommented.
    for offered in [
        "ETCD_CERT_FILE",
        "ETCD_PEER_CERT_FILE",
        "ETCD_TRUSTED_CA_FILE",
        "ETCD_DISCOVERY",
    ] {
        assert!(
            assignments.iter().any(|a| a.commented && a.key == offered),
            "{ENV_FILE}: {offered} is not offered as a comment"
        );
    }
}

#[test]
fn the_example_member_can_start_under_the_unit() {
    let unit = parse_unit(&common::read(UNIT));
    let assignments = parse_env_file(&common::read(ENV_FILE));
    let set = set_variables(&assignments);

    // Its directories are among those the unit lets it write to.
    // `-` (ignore if missing) and `+` (relative to the root directory) prefix a path.
    let writable: Vec<&str> = unit
        .get("Service")
        .and_then(|s| s.get("ReadWritePaths"))
        .into_iter()
        .flatten()
        .flat_map(|value| value.split_whitespace())
        .map(|path| path.trim_start_matches(['-', '+']))
        .collect();
    assert!(
        writable.contains(&"/var/lib/etcd"),
        "{UNIT}: ReadWritePaths lacks /var/lib/etcd: {writable:?}"
    );
    for key in ["ETCD_DATA_DIR", "ETCD_WAL_DIR"] {
        let Some(dir) = set.get(key) else { continue };
        assert!(
            writable.iter().any(|w| dir
                .strip_prefix(w)
                .is_some_and(|rest| rest.starts_with('/'))),
            "{ENV_FILE}: {key}={dir} is not below a ReadWritePaths directory of {UNIT} \
             ({writable:?})"
        );
    }

    // etcd's own bootstrap check: the member's name and peer URLs are in the initial cluster.
    let name = set["ETCD_NAME"];
    let peer_urls = set["ETCD_INITIAL_ADVERTISE_PEER_URLS"];
    let cluster = set["ETCD_INITIAL_CLUSTER"];
    let own: Vec<&str> = cluster
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .filter(|(member, _)| *member == name)
        .map(|(_, url)| url)
        .collect();
    assert_eq!(
        own.join(","),
        peer_urls,
        "{ENV_FILE}: ETCD_INITIAL_CLUSTER does not give member {name} its \
         ETCD_INITIAL_ADVERTISE_PEER_URLS"
    );
    assert!(
        ["new", "existing"].contains(&set["ETCD_INITIAL_CLUSTER_STATE"]),
        "{ENV_FILE}: ETCD_INITIAL_CLUSTER_STATE is new or existing"
    );
}
