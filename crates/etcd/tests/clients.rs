//! Real etcd clients from Debian against our server: python-etcd3 (and etcd's own etcdctl in
//! the etcdctl crate's tests). Skipped with a note when the client is not installed; CI
//! installs it.

mod common;

use std::path::Path;
use std::process::Command;

use common::EtcdProcess;

#[tokio::test]
async fn python_etcd3_works_unchanged() {
    let python = Path::new("/usr/bin/python3");
    let has_etcd3 = python.exists()
        && Command::new(python)
            .args(["-c", "import etcd3"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !has_etcd3 {
        eprintln!("skipping: python3-etcd3 is not installed (apt-get install python3-etcd3)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("py.etcd"), &[]).await;
    let url = url::Url::parse(&etcd.client_url).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_etcd3.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(url.host_str().unwrap())
        .arg(url.port().unwrap().to_string())
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("python-etcd3 OK"));
}
