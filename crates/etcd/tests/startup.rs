//! Starting the binary: flags, config file and data dir problems give one clear error line and
//! a non-zero exit, never a panic; a torn WAL tail is repaired, corruption before it refuses to
//! start with the file and offset named.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{EtcdProcess, run_etcd, run_etcd_expecting_exit};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_flag() {
    let out = run_etcd(&["--version"], &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("etcd Version: 3.4.23\n"), "{stdout}");
}

#[test]
fn help_prints_the_usage_on_stderr_and_the_flags_on_stdout() {
    let out = run_etcd(&["--help"], &[]);
    assert!(out.status.success());
    let usage = stderr(&out);
    assert!(usage.starts_with("Usage:\n"), "{usage}");
    assert!(usage.contains("\n  etcd --config-file\n"), "{usage}");
    let flags = String::from_utf8_lossy(&out.stdout);
    assert!(flags.contains("\nMember:\n  --name 'default'\n"), "{flags}");
}

#[test]
fn bad_auth_token_options_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("a.etcd");
    let data_dir = data_dir.to_str().unwrap();
    for (option, expected) in [
        (
            "jwt,pub-key=/nonexistent.pub",
            "invalid auth signature method",
        ),
        (
            "jwt,sign-method=RS256,pub-key=/nonexistent.pub",
            "cannot read the JWT pub-key /nonexistent.pub",
        ),
        ("bogus", "auth: invalid auth options"),
    ] {
        let out = run_etcd(&["--data-dir", data_dir, "--auth-token", option], &[]);
        assert!(!out.status.success(), "{option}");
        assert!(
            stderr(&out).contains(expected),
            "{option}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn unknown_flag_is_refused_like_etcd() {
    let out = run_etcd(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("flag provided but not defined: -no-such-flag\n"));
}

#[test]
fn bad_values_name_the_flag() {
    let out = run_etcd(&["--initial-cluster-state", "sideways"], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("initial-cluster-state"),
        "{}",
        stderr(&out)
    );

    let out = run_etcd(
        &["--heartbeat-interval", "500", "--election-timeout", "1000"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[500ms]"), "{}", stderr(&out));

    // From the environment too.
    let out = run_etcd(&[], &[("ETCD_SNAPSHOT_COUNT", "many")]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("ETCD_SNAPSHOT_COUNT"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_config_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yml");
    let out = run_etcd(&["--config-file", missing.to_str().unwrap()], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("nope.yml"), "{}", stderr(&out));

    let bad = dir.path().join("bad.yml");
    fs::write(&bad, "snapshot-count: [1, 2\n").unwrap();
    let out = run_etcd(&["--config-file", bad.to_str().unwrap()], &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("bad.yml"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

#[tokio::test]
async fn config_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let client = format!("http://127.0.0.1:{}", common::free_port());
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    let data_dir = dir.path().join("cfg.etcd");
    let yaml = format!(
        "name: fromfile\ndata-dir: {}\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n\
         listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: fromfile={peer}\n",
        data_dir.display()
    );
    let file = dir.path().join("etcd.yml");
    fs::write(&file, yaml).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args(["--config-file", file.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ok = false;
    for _ in 0..200 {
        if let Ok(mut c) =
            etcd_client::Client::connect(&[client.as_str()], Default::default()).await
            && let Ok(resp) = c
                .cluster
                .member_list(etcd_api::etcdserverpb::MemberListRequest::default())
                .await
        {
            ok = resp.into_inner().members[0].name == "fromfile";
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "the member did not come up with the config file's name");
}

fn wal_segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(data_dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

async fn write_and_kill(data_dir: &Path) -> EtcdProcess {
    let mut etcd = EtcdProcess::start(data_dir, &[]).await;
    let mut c = etcd.client().await;
    for i in 0..100 {
        c.put(format!("k{i:03}"), vec![b'v'; 100]).await.unwrap();
    }
    etcd.kill();
    etcd
}

#[tokio::test]
async fn torn_wal_tail_is_truncated_and_the_member_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("torn.etcd");
    let mut etcd = write_and_kill(&data_dir).await;
    let segment = wal_segments(&data_dir).pop().unwrap();
    // A record cut short at the end of the log, as a crash in the middle of a write leaves
    // it: a header (length 139, an entry) and 60 of its 139 payload bytes. Appended rather than
    // cut from the last real record: that one was fsynced before it was applied, and the
    // backend may hold it durably already, which a real crash could never undo.
    let mut torn = Vec::new();
    torn.extend_from_slice(&139u32.to_le_bytes());
    torn.push(2);
    torn.extend_from_slice(&[0u8; 4]);
    torn.extend_from_slice(&[0xab; 60]);
    {
        use std::io::Write as _;
        let mut f = fs::OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(&torn).unwrap();
    }
    etcd.spawn();
    etcd.wait_ready().await;
    let mut c = etcd.client().await;
    let got = c.get_prefix("k").await.unwrap();
    // Every acknowledged write is there; the torn one was never acknowledged.
    assert_eq!(got.kvs.len(), 100, "only {} keys survived", got.kvs.len());
    assert!(
        etcd.log().contains("torn"),
        "no warning about the torn tail:\n{}",
        etcd.log()
    );
}

#[tokio::test]
async fn corrupt_wal_refuses_to_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("corrupt.etcd");
    let etcd = write_and_kill(&data_dir).await;
    let segment = wal_segments(&data_dir).pop().unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    // Flip every bit of a byte well before the tail, in an early entry. (Writing a constant
    // would change nothing when the byte already held it, and the member would start.)
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(len / 3)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(len / 3)).unwrap();
    f.write_all(&[!byte[0]]).unwrap();
    drop(f);
    // The same flags as before: the data dir decides, and the WAL is read before listening.
    let (status, err) = run_etcd_expecting_exit(&etcd.args(), Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(segment.to_str().unwrap()) && err.contains("offset"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
