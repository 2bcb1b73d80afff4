//! Checks of the deployment files in `deploy/`, run as this crate's tests (`tests/`): the
//! Kubernetes manifests read back through the Kubernetes API's types (k8s-openapi), so a
//! misspelled or misplaced field fails instead of being dropped by the API server, plus the
//! wiring between them (services, probes, `--initial-cluster`); the systemd unit and its
//! environment file, whose variables must all name etcd 3.4 flags. No code: the crate exists for
//! its tests.
