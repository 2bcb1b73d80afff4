//! Spawning the real `etcd` binary on random loopback ports for integration tests.

#![allow(dead_code)]

pub mod cluster;
pub mod namespace;
pub mod pki;
pub mod reference;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

#[path = "../../../../tests/support/ports.rs"]
mod ports;
pub use ports::free_port;

pub struct EtcdProcess {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub client_url: String,
    pub peer_url: String,
    pub extra_args: Vec<String>,
    pub log_path: PathBuf,
}

impl EtcdProcess {
    /// Starts a single member in `data_dir` and waits until it answers.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> EtcdProcess {
        let client_url = format!("http://127.0.0.1:{}", free_port());
        EtcdProcess::start_at(data_dir, &client_url, extra_args).await
    }

    /// The same, serving clients on `client_url`.
    pub async fn start_at(data_dir: &Path, client_url: &str, extra_args: &[&str]) -> EtcdProcess {
        let mut p = EtcdProcess {
            child: None,
            data_dir: data_dir.to_path_buf(),
            client_url: client_url.to_string(),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log_path: data_dir.with_extension("log"),
        };
        p.spawn();
        p.wait_ready().await;
        p
    }

    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--name".to_string(),
            "test".to_string(),
            "--data-dir".to_string(),
            self.data_dir.display().to_string(),
            "--listen-client-urls".to_string(),
            self.client_url.clone(),
            "--advertise-client-urls".to_string(),
            self.client_url.clone(),
            "--listen-peer-urls".to_string(),
            self.peer_url.clone(),
            "--initial-advertise-peer-urls".to_string(),
            self.peer_url.clone(),
            "--initial-cluster".to_string(),
            format!("test={}", self.peer_url),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log file");
        let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(self.args())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
    }

    /// Polls until a linearizable read succeeds: the member is up, has a leader, and applies.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("etcd exited early with {status}; log:\n{}", self.log());
            }
            if let Ok(mut c) = self.try_client().await
                && c.get("readiness-probe").await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn try_client(&self) -> Result<Client, etcd_client::ClientError> {
        let options = ConnectOptions {
            dial_timeout: Duration::from_secs(1),
            request_timeout: Some(Duration::from_secs(10)),
            ..ConnectOptions::default()
        };
        Client::connect(&[self.client_url.as_str()], options).await
    }

    pub async fn client(&self) -> Client {
        self.try_client().await.expect("connect to etcd")
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the binary with these arguments, expecting it to exit by itself within `limit`: it is
/// killed and the test fails if it does not (a member that starts serving instead of refusing
/// would otherwise hang the test for ever). Returns the exit status and stderr.
pub fn run_etcd_expecting_exit(
    args: &[String],
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let stderr_file = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr_file.reopen().expect("reopen stderr file"))
        .spawn()
        .expect("spawn etcd");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for etcd") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "etcd still running after {limit:?}; stderr:\n{}",
                std::fs::read_to_string(stderr_file.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    (status, stderr)
}

/// Runs the binary to completion with these arguments (and environment), for flag tests.
pub fn run_etcd(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etcd"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run etcd")
}

/// Adds user `root` with the root role (before auth is enabled, etcd requires it).
pub async fn add_root(client: &mut Client, password: &str) {
    use etcd_api::etcdserverpb::{AuthUserAddRequest, AuthUserGrantRoleRequest};
    client
        .auth
        .user_add(AuthUserAddRequest {
            name: "root".into(),
            password: password.into(),
            ..Default::default()
        })
        .await
        .expect("add root");
    client
        .auth
        .user_grant_role(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
        .expect("grant root its role");
}

/// Adds `user` with a new role `role` holding one permission of `kind` on `[key, range_end)`.
pub async fn add_user_with_permission(
    client: &mut Client,
    (user, password): (&str, &str),
    role: &str,
    kind: etcd_api::authpb::permission::Type,
    (key, range_end): (&[u8], &[u8]),
) {
    use etcd_api::authpb::Permission;
    use etcd_api::etcdserverpb::{
        AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest,
    };
    let auth = &mut client.auth;
    auth.user_add(AuthUserAddRequest {
        name: user.into(),
        password: password.into(),
        ..Default::default()
    })
    .await
    .expect("add user");
    auth.role_add(AuthRoleAddRequest { name: role.into() })
        .await
        .expect("add role");
    auth.role_grant_permission(AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission {
            perm_type: kind as i32,
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        }),
    })
    .await
    .expect("grant the permission");
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
    .await
    .expect("grant the role");
}
