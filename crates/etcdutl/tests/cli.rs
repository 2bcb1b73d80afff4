//! The `etcdutl` binary on db files we write ourselves: status, defrag, restore; and, when
//! etcd 3.4 is installed, etcd starting from the restored data dir.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcdutl::bbolt::{self, Bucket};

fn etcdutl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etcdutl"))
}

/// A db like etcd's with `n` keys at revisions 2..n+1 (mvccpb.KeyValue values).
fn write_db(path: &Path, n: u64) {
    let mut key = Bucket::new();
    for i in 0..n {
        let rev = i + 2;
        let mut k = rev.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0u64.to_be_bytes());
        let name = format!("k{i}");
        let kv = etcdutl::pb::Enc::new()
            .bytes(1, name.as_bytes())
            .uint(2, rev)
            .uint(3, rev)
            .uint(4, 1)
            .bytes(5, b"value")
            .done();
        key.insert(k, kv);
    }
    let mut meta = Bucket::new();
    meta.insert(b"consistent_index".to_vec(), 5u64.to_be_bytes().to_vec());
    let buckets = vec![
        (b"alarm".to_vec(), Bucket::new()),
        (b"auth".to_vec(), Bucket::new()),
        (b"authRoles".to_vec(), Bucket::new()),
        (b"authUsers".to_vec(), Bucket::new()),
        (b"cluster".to_vec(), Bucket::new()),
        (b"key".to_vec(), key),
        (b"lease".to_vec(), Bucket::new()),
        (b"members".to_vec(), Bucket::new()),
        (b"members_removed".to_vec(), Bucket::new()),
        (b"meta".to_vec(), meta),
    ];
    std::fs::write(path, bbolt::write(&buckets, 4096)).expect("write db");
}

#[test]
fn status_defrag_and_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("snap.db");
    write_db(&db, 300);
    let out = etcdutl()
        .args(["snapshot", "status", &db.to_string_lossy()])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(", ").collect();
    assert_eq!(fields[1], "301", "{line}");
    assert_eq!(fields[2], "301", "{line}");
    let json = etcdutl()
        .args(["-w", "json", "snapshot", "status", &db.to_string_lossy()])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"revision\":301"));

    // Without an appended hash, restore needs --skip-hash-check, as etcd's does.
    let data = dir.path().join("restored");
    let refused = etcdutl()
        .args([
            "snapshot",
            "restore",
            &db.to_string_lossy(),
            "--data-dir",
            &data.to_string_lossy(),
        ])
        .output()
        .expect("run");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("snapshot missing hash but --skip-hash-check=false")
    );
    let peer = "http://127.0.0.1:1";
    let out = etcdutl()
        .args([
            "snapshot",
            "restore",
            &db.to_string_lossy(),
            "--skip-hash-check",
            "--name",
            "m1",
            "--initial-cluster",
            &format!("m1={peer}"),
            "--initial-advertise-peer-urls",
            peer,
            "--data-dir",
            &data.to_string_lossy(),
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let restored_db = data.join("member").join("snap").join("db");
    let st = etcdutl::snapshot::status(&restored_db).expect("status");
    assert_eq!(st.revision, 301);
    assert!(
        data.join("member")
            .join("wal")
            .join("0000000000000000-0000000000000000.wal")
            .exists()
    );

    let out = etcdutl()
        .args(["defrag", "--data-dir", &data.to_string_lossy()])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(etcdutl::snapshot::status(&restored_db).expect("status"), st);

    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!(
            "note: /usr/bin/etcd missing (Debian etcd-server); not starting etcd on the restored dir"
        );
        return;
    }
    let port = free_port();
    let ppeer = free_port();
    let client = format!("http://127.0.0.1:{port}");
    let mut etcd = Command::new("/usr/bin/etcd")
        .args([
            "--name",
            "m1",
            "--data-dir",
            &data.to_string_lossy(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{ppeer}"),
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            &format!("m1={peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut served = false;
    while Instant::now() < deadline && !served {
        std::thread::sleep(Duration::from_millis(200));
        let body = http_post(port, "/v3/kv/range", r#"{"key":"azI5OQ=="}"#);
        served = body.contains("\"value\":\"dmFsdWU=\"");
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert!(served, "etcd did not serve k299 from the restored data dir");
}

fn http_post(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn garbage_files_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("junk");
    std::fs::write(&f, vec![0x5au8; 10000]).expect("write");
    let out = etcdutl()
        .args(["snapshot", "status", &f.to_string_lossy()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "));
    let missing = etcdutl()
        .args(["snapshot", "status", "/nonexistent/x"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(1));
}

/// A loopback port below Linux's ephemeral range (32768 and up), so no outgoing connection on
/// the machine can take it between our check and etcd binding it.
#[path = "../../../tests/support/ports.rs"]
mod ports;
use ports::free_port;

/// Runs `etcdutl args` and asserts it fails the way a user can act on: exit 1, one
/// `Error: ...` line, no panic.
fn fails_cleanly(args: &[&str], what: &str) -> String {
    let out = etcdutl().args(args).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what}: {args:?}: {stderr}");
    assert!(stderr.contains("Error: "), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    stderr
}

#[test]
fn truncated_flipped_and_misdigested_snapshots_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("snap.db");
    write_db(&db, 300);
    let mut file = std::fs::read(&db).expect("read");
    let digest = ring::digest::digest(&ring::digest::SHA256, &file);
    file.extend_from_slice(digest.as_ref());
    let cut = dir.path().join("cut.db");
    let restore_to = dir.path().join("restored");
    // Every 4 KiB boundary: never a panic, never a restored data dir.
    for len in (0..file.len())
        .step_by(4096)
        .chain([file.len() - 1, file.len() - 33])
    {
        std::fs::write(&cut, &file[..len]).expect("write");
        let path = cut.to_string_lossy().into_owned();
        let what = format!("cut at {len} of {}", file.len());
        let status = etcdutl()
            .args(["snapshot", "status", &path])
            .output()
            .expect("run");
        assert!(
            !String::from_utf8_lossy(&status.stderr).contains("panicked"),
            "{what}"
        );
        fails_cleanly(
            &[
                "snapshot",
                "restore",
                &path,
                "--data-dir",
                &restore_to.to_string_lossy(),
            ],
            &what,
        );
        assert!(!restore_to.exists(), "{what}: a data dir was left behind");
    }
    // A flipped byte in the data, and a wrong digest: the hash check refuses both.
    for (what, at) in [
        ("a flipped data byte", 5000),
        ("a wrong digest", file.len() - 1),
    ] {
        let mut bad = file.clone();
        bad[at] ^= 0x40;
        std::fs::write(&cut, &bad).expect("write");
        let stderr = fails_cleanly(
            &[
                "snapshot",
                "restore",
                &cut.to_string_lossy(),
                "--data-dir",
                &restore_to.to_string_lossy(),
            ],
            what,
        );
        assert!(stderr.contains("expected sha256"), "{what}: {stderr}");
        assert!(!restore_to.exists(), "{what}: a data dir was left behind");
    }
}

/// `etcdutl convert` turns the data dir `snapshot restore` made (etcd's formats) into ours,
/// once: a second run finds nothing to do, and damage is refused with the file named.
#[test]
fn convert_makes_an_etcd_data_dir_ours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("snap.db");
    write_db(&db, 25);
    let data = dir.path().join("m.etcd");
    let out = etcdutl()
        .args([
            "snapshot",
            "restore",
            &db.to_string_lossy(),
            "--skip-hash-check",
        ])
        .args(["--name", "m", "--data-dir", &data.to_string_lossy()])
        .args(["--initial-cluster", "m=http://127.0.0.1:2380"])
        .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");

    let damaged = dir.path().join("damaged.etcd");
    copy_dir(&data, &damaged);
    let wal = damaged.join("member/wal/0000000000000000-0000000000000000.wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[40] ^= 0xff;
    std::fs::write(&wal, bytes).unwrap();
    let out = etcdutl()
        .args(["convert", "--data-dir", &damaged.to_string_lossy()])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&wal.display().to_string()), "{err}");

    let out = etcdutl()
        .args(["convert", "--data-dir", &data.to_string_lossy()])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("revision 26") && said.contains("25 key records"),
        "{said}"
    );
    let head = std::fs::read(data.join("member/snap/db")).unwrap();
    assert_ne!(
        &head[16..20],
        &0xED0C_DAEDu32.to_le_bytes(),
        "no longer bbolt"
    );
    let out = etcdutl()
        .args(["convert", "--data-dir", &data.to_string_lossy()])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Nothing to convert"),
        "{out:?}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
