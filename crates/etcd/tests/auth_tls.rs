//! Auth over TLS: with `--client-cert-auth`, a request with no token acts as the user its
//! client certificate names (CN), as etcd; a token, when given, wins. And python-etcd3 (Debian's
//! python3-etcd3) logs in with a user and password, which grpcio sends only over TLS.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::EtcdProcess;
use common::pki::{Pki, client_tls};
use etcd_api::authpb::{Permission, permission::Type};
use etcd_api::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest,
};
use etcd_client::{Client, ConnectOptions, Credentials};

/// A member serving clients over https with the PKI's server certificate, not started yet.
/// With `--trusted-ca-file` (in `extra`), clients must present a certificate, as with etcd.
fn tls_member(dir: &Path, pki: &Pki, extra: &[&str]) -> EtcdProcess {
    let server = pki.issue("server", &["127.0.0.1"]);
    let mut args: Vec<String> = vec![
        format!("--cert-file={}", server.0.display()),
        format!("--key-file={}", server.1.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    EtcdProcess {
        child: None,
        data_dir: dir.join("data"),
        client_url: format!("https://127.0.0.1:{}", common::free_port()),
        peer_url: format!("http://127.0.0.1:{}", common::free_port()),
        extra_args: args,
        log_path: dir.join("member.log"),
    }
}

fn options(pki: &Pki, cert: Option<&(std::path::PathBuf, std::path::PathBuf)>) -> ConnectOptions {
    ConnectOptions {
        tls: Some(client_tls(&pki.ca(), cert)),
        dial_timeout: Duration::from_secs(2),
        request_timeout: Some(Duration::from_secs(10)),
        ..ConnectOptions::default()
    }
}

async fn wait_serving(etcd: &mut EtcdProcess, options: &ConnectOptions) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(child) = etcd.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("etcd exited with {status}; log:\n{}", etcd.log());
        }
        if let Ok(mut c) = Client::connect(&[etcd.client_url.as_str()], options.clone()).await
            && c.get("probe").await.is_ok()
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "not serving; log:\n{}",
            etcd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// root (root role), and alice with read-write on `a/`; then auth on.
async fn set_up_users(c: &mut Client) {
    for (name, password) in [("root", "rootpw"), ("alice", "alicepw")] {
        c.auth
            .user_add(AuthUserAddRequest {
                name: name.into(),
                password: password.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for (role, user) in [("root", "root"), ("r1", "alice")] {
        c.auth
            .role_add(AuthRoleAddRequest { name: role.into() })
            .await
            .unwrap();
        c.auth
            .user_grant_role(AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            })
            .await
            .unwrap();
    }
    c.auth
        .role_grant_permission(AuthRoleGrantPermissionRequest {
            name: "r1".into(),
            perm: Some(Permission {
                perm_type: Type::Readwrite as i32,
                key: b"a/".to_vec(),
                range_end: b"a0".to_vec(),
            }),
        })
        .await
        .unwrap();
    c.auth.auth_enable(AuthEnableRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cn_is_the_user_when_there_is_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let ca = format!("--trusted-ca-file={}", pki.ca().display());
    let mut etcd = tls_member(dir.path(), &pki, &["--client-cert-auth", &ca]);
    etcd.spawn();
    let root_cert = pki.issue_cn("root-client", &["127.0.0.1"], Some("root"));
    let mut root = wait_serving(&mut etcd, &options(&pki, Some(&root_cert))).await;
    set_up_users(&mut root).await;
    // root, by its certificate alone, still administers.
    root.put("b/by-root", "x").await.unwrap();

    let alice_cert = pki.issue_cn("alice-client", &["127.0.0.1"], Some("alice"));
    let url = [etcd.client_url.as_str()];
    let mut alice = Client::connect(&url, options(&pki, Some(&alice_cert)))
        .await
        .unwrap();
    alice.put("a/1", "mine").await.unwrap();
    let denied = alice.put("b/1", "not mine").await.unwrap_err().to_string();
    assert!(denied.contains("etcdserver: permission denied"), "{denied}");

    // A certificate naming nobody the server knows gets nothing.
    let bob_cert = pki.issue_cn("bob-client", &["127.0.0.1"], Some("bob"));
    let mut bob = Client::connect(&url, options(&pki, Some(&bob_cert)))
        .await
        .unwrap();
    assert!(bob.put("a/2", "x").await.is_err());

    // A token wins over the certificate: alice's certificate with root's password.
    let mut as_root = Client::connect_as(
        &url,
        options(&pki, Some(&alice_cert)),
        Credentials {
            user: "root".into(),
            password: "rootpw".into(),
        },
    )
    .await
    .unwrap();
    as_root.put("b/2", "root's").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_etcd3_logs_in_with_a_user_and_password_over_tls() {
    let python = Path::new("/usr/bin/python3");
    let has_etcd3 = python.exists()
        && std::process::Command::new(python)
            .args(["-c", "import etcd3"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !has_etcd3 {
        eprintln!("skipping: python3-etcd3 is not installed (apt-get install python3-etcd3)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut etcd = tls_member(dir.path(), &pki, &[]);
    etcd.spawn();
    let mut c = wait_serving(&mut etcd, &options(&pki, None)).await;
    set_up_users(&mut c).await;
    let url = url::Url::parse(&etcd.client_url).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_etcd3_auth.py"
    );
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(url.host_str().unwrap())
        .arg(url.port().unwrap().to_string())
        .arg(pki.ca())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python-etcd3 failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        etcd.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python-etcd3 auth OK"));
}
