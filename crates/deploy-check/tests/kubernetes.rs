//! The Kubernetes manifests in `deploy/kubernetes/`, checked offline against the Kubernetes
//! API's types (k8s-openapi) and against each other.
//!
//! Every YAML document is read into the typed struct of its `kind` and written back; the result
//! must equal the document. Typed reading alone would not do: it ignores fields it does not know,
//! so a misspelled or misplaced field (`livenesProbe`, a probe under the pod instead of the
//! container) would pass unnoticed. A value the API reads into another type (a number where it
//! keeps a string, as for quantities) also differs: write it as it reads back. Then the wiring:
//! the StatefulSet names the headless Service, selectors find the pods, the probes ask `/livez`
//! and `/readyz` on the client port, and each pod's environment, expanded as the kubelet expands
//! it, gives etcd an initial cluster of exactly `replicas` members in which it finds itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::serde::{Deserialize, Serialize};
use serde_json::Value;

const DIR: &str = "deploy/kubernetes";
const CLIENT_PORT: i32 = 2379;
const PEER_PORT: i32 = 2380;
/// The namespace the pods' environment is expanded with; any name would do.
const NAMESPACE: &str = "ns";

/// One YAML document and the file it came from.
struct Document {
    file: String,
    value: Value,
}

/// Every document of every `*.yaml` file in `deploy/kubernetes/`, in file name order.
fn documents() -> Vec<Document> {
    let dir = common::repo_root().join(DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let file = format!(
            "{DIR}/{}",
            path.file_name().expect("a file").to_string_lossy()
        );
        let text = common::read(&file);
        for de in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(de).unwrap_or_else(|e| panic!("{file}: {e}"));
            // An empty document (a lone `---`) is no object.
            if !value.is_null() {
                docs.push(Document {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    docs
}

/// Where `written` and `read_back` differ, as JSON paths: what the typed struct dropped,
/// changed or added.
fn differences(path: &str, written: &Value, read_back: &Value, out: &mut Vec<String>) {
    match (written, read_back) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let at = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(&at, x, y, out),
                    (Some(_), None) => out.push(format!("{at}: unknown to the API, dropped")),
                    (None, Some(y)) => out.push(format!("{at}: added as {y}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if written == read_back => {}
        _ => out.push(format!("{path}: {written} read back as {read_back}")),
    }
}

/// The document as a `T`, which must write back to exactly the document.
fn typed<T: Resource + DeserializeOwned + Serialize>(doc: &Document) -> T {
    let object: T = serde_json::from_value(doc.value.clone())
        .unwrap_or_else(|e| panic!("{}: not a valid {}: {e}", doc.file, T::KIND));
    let back = serde_json::to_value(&object).expect("a typed object serializes");
    let mut diffs = Vec::new();
    differences("", &doc.value, &back, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{}: the {} does not read back as written (a misspelled or misplaced field?):\n  {}",
        doc.file,
        T::KIND,
        diffs.join("\n  ")
    );
    object
}

/// The manifests, by kind.
#[derive(Default)]
struct Manifests {
    services: Vec<Service>,
    stateful_sets: Vec<StatefulSet>,
    budgets: Vec<PodDisruptionBudget>,
}

fn is<T: Resource>(value: &Value) -> bool {
    value["apiVersion"] == T::API_VERSION && value["kind"] == T::KIND
}

fn manifests() -> Manifests {
    let mut m = Manifests::default();
    for doc in documents() {
        let v = &doc.value;
        if is::<Service>(v) {
            m.services.push(typed(&doc));
        } else if is::<StatefulSet>(v) {
            m.stateful_sets.push(typed(&doc));
        } else if is::<PodDisruptionBudget>(v) {
            m.budgets.push(typed(&doc));
        } else {
            panic!(
                "{}: apiVersion {} kind {} is not one this check knows; add it to manifests()",
                doc.file, v["apiVersion"], v["kind"]
            );
        }
    }
    m
}

/// The one StatefulSet, its pod spec and its etcd container.
fn etcd(m: &Manifests) -> (&StatefulSet, &PodSpec, &Container) {
    let [set] = m.stateful_sets.as_slice() else {
        panic!(
            "{DIR}: expected one StatefulSet, found {}",
            m.stateful_sets.len()
        );
    };
    let pod = set
        .spec
        .template
        .spec
        .as_ref()
        .expect("StatefulSet pod template spec");
    let [container] = pod.containers.as_slice() else {
        panic!("{DIR}: expected one container in the StatefulSet's pods");
    };
    (set, pod, container)
}

fn name(set: &StatefulSet) -> &str {
    set.metadata
        .name
        .as_deref()
        .expect("StatefulSet.metadata.name")
}

fn replicas(set: &StatefulSet) -> usize {
    let replicas = set.spec.replicas.unwrap_or(1);
    usize::try_from(replicas).expect("replicas is not negative")
}

/// The headless Service (clusterIP None) and the others.
fn headless(m: &Manifests) -> (&Service, Vec<&Service>) {
    let (headless, others): (Vec<&Service>, Vec<&Service>) = m
        .services
        .iter()
        .partition(|s| s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None"));
    let [headless] = headless.as_slice() else {
        panic!(
            "{DIR}: expected one headless Service, found {}",
            headless.len()
        );
    };
    (headless, others)
}

/// The container's port number for a probe's or Service's target port.
fn resolve_port(container: &Container, port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .unwrap_or_else(|| panic!("{DIR}: no container port named {name}")),
    }
}

/// Whether a selector (matchLabels only: all we write) selects pods with these labels.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn match_labels(selector: &LabelSelector) -> BTreeMap<String, String> {
    assert!(
        selector.match_expressions.is_none(),
        "{DIR}: matchExpressions are not checked here; use matchLabels"
    );
    selector.match_labels.clone().unwrap_or_default()
}

/// The container's environment for the pod with this ordinal, expanded as the kubelet does:
/// `$(NAME)` from the variables listed before it, `$$` for a literal `$`. A reference to a
/// variable not defined before it is an error here (the kubelet would leave it unexpanded).
fn environment(set: &StatefulSet, container: &Container, ordinal: usize) -> Vec<(String, String)> {
    let pod_name = format!("{}-{ordinal}", name(set));
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), None) => {
                expand(value, &env).unwrap_or_else(|e| panic!("{DIR}: env {}: {e}", var.name))
            }
            (None, Some(from)) => {
                let field = from.field_ref.as_ref().map(|f| f.field_path.as_str());
                match field {
                    Some("metadata.name") => pod_name.clone(),
                    Some("metadata.namespace") => NAMESPACE.to_string(),
                    _ => panic!("{DIR}: env {}: a source this check does not know", var.name),
                }
            }
            _ => panic!("{DIR}: env {}: neither a value nor a field", var.name),
        };
        env.push((var.name.clone(), value));
    }
    env
}

fn expand(value: &str, defined: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            let end = inner.find(')').ok_or(format!("unclosed $( in {value}"))?;
            let reference = &inner[..end];
            let (_, resolved) = defined
                .iter()
                .rev()
                .find(|(name, _)| name == reference)
                .ok_or(format!("$({reference}) is not defined before it"))?;
            out.push_str(resolved);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn get<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("{DIR}: the etcd container does not set {key}"))
}

#[test]
fn every_document_reads_back_as_written() {
    let m = manifests();
    assert_eq!(
        m.services.len(),
        2,
        "{DIR}: a headless and a client Service"
    );
    assert_eq!(m.stateful_sets.len(), 1, "{DIR}: one StatefulSet");
    assert_eq!(m.budgets.len(), 1, "{DIR}: one PodDisruptionBudget");
}

#[test]
fn services_find_the_members() {
    let m = manifests();
    let (set, _, container) = etcd(&m);
    let spec = &set.spec;
    let (headless, clients) = headless(&m);

    // The pods' DNS names come from the Service the StatefulSet names.
    assert_eq!(
        spec.service_name.as_deref(),
        headless.metadata.name.as_deref()
    );
    let headless_spec = headless.spec.as_ref().expect("Service.spec");
    assert_eq!(
        headless_spec.publish_not_ready_addresses,
        Some(true),
        "{DIR}: peers must resolve each other before they are ready"
    );

    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert!(
        selects(&match_labels(&spec.selector), &labels),
        "{DIR}: the StatefulSet's selector does not select its own pods"
    );
    for service in std::iter::once(headless).chain(clients.iter().copied()) {
        let service_name = service.metadata.name.as_deref().unwrap_or("?");
        let s = service.spec.as_ref().expect("Service.spec");
        assert!(
            selects(&s.selector.clone().unwrap_or_default(), &labels),
            "{DIR}: Service {service_name} does not select the etcd pods"
        );
        for port in s.ports.iter().flatten() {
            let target = port
                .target_port
                .clone()
                .unwrap_or(IntOrString::Int(port.port));
            assert_eq!(
                resolve_port(container, &target),
                port.port,
                "{DIR}: Service {service_name} port {} reaches another container port",
                port.port
            );
        }
    }
    let ports = |s: &Service| -> BTreeSet<i32> {
        s.spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .map(|p| p.port)
            .collect()
    };
    assert_eq!(ports(headless), BTreeSet::from([CLIENT_PORT, PEER_PORT]));
    let [client] = clients.as_slice() else {
        panic!("{DIR}: expected one client Service");
    };
    assert_eq!(ports(client), BTreeSet::from([CLIENT_PORT]));

    let [budget] = m.budgets.as_slice() else {
        panic!("{DIR}: expected one PodDisruptionBudget");
    };
    let budget = budget.spec.as_ref().expect("PodDisruptionBudget.spec");
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    let selector = budget
        .selector
        .as_ref()
        .expect("PodDisruptionBudget.spec.selector");
    assert!(
        selects(&match_labels(selector), &labels),
        "{DIR}: the PodDisruptionBudget does not select the etcd pods"
    );
}

#[test]
fn probes_ask_livez_and_readyz_on_the_client_port() {
    let m = manifests();
    let (_, _, container) = etcd(&m);
    let check = |probe: Option<&Probe>, kind: &str, path: &str| {
        let probe = probe.unwrap_or_else(|| panic!("{DIR}: no {kind} probe"));
        let get = probe
            .http_get
            .as_ref()
            .unwrap_or_else(|| panic!("{DIR}: the {kind} probe is not an HTTP GET"));
        assert_eq!(
            get.path.as_deref(),
            Some(path),
            "{DIR}: the {kind} probe's path"
        );
        assert_eq!(
            resolve_port(container, &get.port),
            CLIENT_PORT,
            "{DIR}: the {kind} probe's port"
        );
        assert!(
            get.scheme.as_deref().is_none_or(|s| s == "HTTP"),
            "{DIR}: the {kind} probe's scheme"
        );
    };
    check(container.liveness_probe.as_ref(), "liveness", "/livez");
    check(container.readiness_probe.as_ref(), "readiness", "/readyz");
    if container.startup_probe.is_some() {
        check(container.startup_probe.as_ref(), "startup", "/livez");
    }
}

#[test]
fn environment_names_only_etcd_flags() {
    let m = manifests();
    let (_, _, container) = etcd(&m);
    let variables = common::etcd_variables();
    for var in container.env.iter().flatten() {
        assert!(
            ["POD_NAME", "NAMESPACE"].contains(&var.name.as_str()) || variables.contains(&var.name),
            "{DIR}: env {} names no etcd 3.4 flag (ETCD_ + the flag in upper case, `-` as `_`)",
            var.name
        );
    }
    // etcd 3.4 refuses to start when a flag and its variable are both set.
    for arg in container.args.iter().chain(&container.command).flatten() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        let flag = flag.split('=').next().unwrap_or(flag);
        let variable = common::env_name(flag);
        assert!(
            !container.env.iter().flatten().any(|v| v.name == variable),
            "{DIR}: {arg} and {variable} are both set"
        );
    }
}

#[test]
fn initial_cluster_lists_exactly_the_replicas() {
    let m = manifests();
    let (set, _, container) = etcd(&m);
    let set_name = name(set);
    let service = set.spec.service_name.as_deref().expect("serviceName");
    let n = replicas(set);
    assert!(n >= 1);
    for ordinal in 0..n {
        let pod = format!("{set_name}-{ordinal}");
        let env = environment(set, container, ordinal);
        assert_eq!(get(&env, "ETCD_NAME"), pod, "{DIR}: ETCD_NAME of pod {pod}");
        assert_eq!(get(&env, "ETCD_INITIAL_CLUSTER_STATE"), "new");

        // etcd-0=http://etcd-0.<service>.<namespace>.svc.cluster.local:2380,... for every
        // replica, in order.
        let cluster = get(&env, "ETCD_INITIAL_CLUSTER");
        let found: Vec<(&str, &str)> = cluster
            .split(',')
            .map(|entry| entry.split_once('=').unwrap_or((entry, "")))
            .collect();
        let expected: Vec<(String, String)> = (0..n)
            .map(|i| {
                let member = format!("{set_name}-{i}");
                let url =
                    format!("http://{member}.{service}.{NAMESPACE}.svc.cluster.local:{PEER_PORT}");
                (member, url)
            })
            .collect();
        let expected: Vec<(&str, &str)> = expected
            .iter()
            .map(|(m, u)| (m.as_str(), u.as_str()))
            .collect();
        assert_eq!(
            found, expected,
            "{DIR}: ETCD_INITIAL_CLUSTER of pod {pod} does not list the {n} replicas"
        );

        // The member finds itself in it under the peer URL it advertises.
        let advertised = get(&env, "ETCD_INITIAL_ADVERTISE_PEER_URLS");
        assert_eq!(
            advertised, expected[ordinal].1,
            "{DIR}: ETCD_INITIAL_ADVERTISE_PEER_URLS of pod {pod}"
        );
    }
}

#[test]
fn members_start_together_apart_with_their_own_volumes() {
    let m = manifests();
    let (set, pod, container) = etcd(&m);
    let spec = &set.spec;
    assert_eq!(
        spec.pod_management_policy.as_deref(),
        Some("Parallel"),
        "{DIR}: members must start together to form a quorum"
    );

    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .expect("podAntiAffinity");
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .any(|term| term.topology_key == "kubernetes.io/hostname"),
        "{DIR}: no anti-affinity term spreads members over hosts"
    );

    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .expect("resource requests");
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));

    // The data directory is on a volume from the claim template, not in the container.
    let claims: BTreeSet<&str> = spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let env = environment(set, container, 0);
    let data_dir = get(&env, "ETCD_DATA_DIR");
    let on_claim = container.volume_mounts.iter().flatten().any(|mount| {
        claims.contains(mount.name.as_str())
            && data_dir
                .strip_prefix(mount.mount_path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    assert!(
        on_claim,
        "{DIR}: ETCD_DATA_DIR={data_dir} is not on a volume of the claim templates"
    );
}
