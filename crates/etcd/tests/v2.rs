//! The v2 API (`--enable-v2`) against etcd 3.4's: one scripted session of v2 requests sent
//! with curl to `/usr/bin/etcd` and to ours (fresh one-member clusters each) must give the
//! same status, headers and bodies, indexes included (ours moves the v2 index as etcd's
//! membership writes do). Then what etcd promises about the store: it survives kill -9,
//! travels in snapshots to a new member, and TTL keys expire once across a leader change.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterOptions};
use common::reference::{Answer, CURL, REF_ETCD, Single, available, curl};

const OURS: &str = env!("CARGO_BIN_EXE_etcd");

/// The request of each step: curl arguments after the URL's path (`-X`, `-d`, ...).
const SESSION: &[(&str, &[&str])] = &[
    ("/v2/keys/foo", &["-XPUT", "-d", "value=bar"]),
    ("/v2/keys/foo", &["-XPUT", "-d", "value=baz"]),
    ("/v2/keys/foo", &[]),
    ("/v2/keys/foo?prevExist=false", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/dir/a", &["-XPUT", "-d", "value=1"]),
    ("/v2/keys/dir/_hidden", &["-XPUT", "-d", "value=2"]),
    ("/v2/keys/dir/sub/b", &["-XPUT", "-d", "value=3"]),
    ("/v2/keys/dir?recursive=true&sorted=true", &[]),
    ("/v2/keys/dir?sorted=true", &[]),
    ("/v2/keys/?recursive=true&sorted=true", &[]),
    ("/v2/keys?sorted=true", &[]),
    ("/v2/keys/dir", &["-XDELETE"]),
    ("/v2/keys/dir?dir=true", &["-XDELETE"]),
    ("/v2/keys/dir/sub?recursive=true", &["-XDELETE"]),
    ("/v2/keys/queue", &["-XPOST", "-d", "value=job1"]),
    ("/v2/keys/queue", &["-XPOST", "-d", "value=job2"]),
    ("/v2/keys/queue?sorted=true", &[]),
    ("/v2/keys/foo?prevValue=nope", &["-XPUT", "-d", "value=x"]),
    (
        "/v2/keys/foo?prevValue=baz",
        &["-XPUT", "-d", "value=swapped"],
    ),
    ("/v2/keys/foo?prevIndex=1", &["-XPUT", "-d", "value=x"]),
    (
        "/v2/keys/foo?prevIndex=1&prevValue=no",
        &["-XPUT", "-d", "value=x"],
    ),
    ("/v2/keys/foo?prevIndex=abc", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/foo?waitIndex=x&wait=true", &[]),
    ("/v2/keys/foo?ttl=abc", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/foo?ttl=-1", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/foo?prevValue=", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/foo?wait=true", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/foo?recursive=maybe", &[]),
    (
        "/v2/keys/foo?prevExist=perhaps",
        &["-XPUT", "-d", "value=x"],
    ),
    ("/v2/keys/foo/bar", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/foo?a=%zz", &[]),
    ("/v2/keys/foo", &["-XPUT", "-d", "value=%zz"]),
    ("/v2/keys/foo", &["-XPATCH"]),
    ("/v2/keys/missing", &[]),
    ("/v2/keys/missing/deeper", &[]),
    (
        "/v2/keys/foo?noValueOnSuccess=true",
        &["-XPUT", "-d", "value=nv"],
    ),
    ("/v2/keys/foo?waitIndex=4&wait=true", &[]),
    ("/v2/keys/dir?waitIndex=4&wait=true&recursive=true", &[]),
    ("/v2/keys/foo?waitIndex=1&wait=true", &[]),
    ("/v2/keys/d2?dir=true", &["-XPUT"]),
    ("/v2/keys/d2?dir=true", &["-XPUT"]),
    ("/v2/keys/d2", &["-XPUT", "-d", "value=onto-a-dir"]),
    ("/v2/keys/d2?prevExist=true", &["-XPUT", "-d", "value=x"]),
    ("/v2/keys/foo?prevExist=true", &["-XPUT", "-d", "value=upd"]),
    (
        "/v2/keys/nope?prevExist=true",
        &["-XPUT", "-d", "value=upd"],
    ),
    ("/v2/keys/foo?prevIndex=1", &["-XDELETE"]),
    ("/v2/keys/foo?prevValue=upd", &["-XDELETE"]),
    ("/v2/keys/t?ttl=100", &["-XPUT", "-d", "value=tmp"]),
    ("/v2/keys/t?refresh=true", &["-XPUT"]),
    (
        "/v2/keys/t?refresh=true&ttl=200",
        &["-XPUT", "-d", "value=x"],
    ),
    ("/v2/keys/t?refresh=true&ttl=200&prevExist=true", &["-XPUT"]),
    (
        "/v2/keys/t?ttl=",
        &["-XPUT", "-d", "value=permanent", "-d", "prevExist=true"],
    ),
    ("/v2/keys/t", &[]),
    ("/v2/keys/x%2Fy", &["-XPUT", "-d", "value=1"]),
    ("/v2/keys/q%20s", &["-XPUT", "-d", "value=%3C%26%3E"]),
    ("/v2/keys/q%20s", &["-I"]),
    ("/v2/keys/0", &["-XPUT", "-d", "value=zero"]),
    ("/v2/members", &[]),
    ("/v2/members/leader", &[]),
    ("/v2/members/zz", &["-XDELETE"]),
    ("/v2/members/abc", &["-XDELETE"]),
    (
        "/v2/members",
        &["-XPOST", "-H", "Content-Type: text/plain", "-d", "x"],
    ),
    ("/v2/members", &["-XPATCH"]),
    ("/v2/stats/leader", &["-XPOST"]),
    ("/v2/nope", &[]),
];

/// v2 auth, from users and roles to enabling it and being refused or let in by it.
const AUTH_SESSION: &[(&str, &[&str])] = &[
    ("/v2/keys/foo", &["-XPUT", "-d", "value=bar"]),
    (
        "/v2/auth/users/foo",
        &["-XPUT", "-d", r#"{"user":"foo", "password":"pass"}"#],
    ),
    (
        "/v2/auth/users/foo",
        &["-XPUT", "-d", r#"{"user":"foo", "password":"pass"}"#],
    ),
    (
        "/v2/auth/users/empty",
        &["-XPUT", "-d", r#"{"user":"empty"}"#],
    ),
    ("/v2/auth/users/bar", &["-XPUT", "-d", r#"{"user":"baz"}"#]),
    ("/v2/auth/users/bar", &["-XPUT", "-d", "not json"]),
    (
        "/v2/auth/roles/foo",
        &[
            "-XPUT",
            "-d",
            r#"{"role":"foo", "permissions": {"kv": {"read": ["/foo/*"]}}}"#,
        ],
    ),
    (
        "/v2/auth/roles/foo",
        &[
            "-XPUT",
            "-d",
            r#"{"role":"foo", "permissions": {"kv": {"read": ["/foo/*"]}}}"#,
        ],
    ),
    (
        "/v2/auth/users/foo",
        &["-XPUT", "-d", r#"{"user": "foo", "grant": ["foo"]}"#],
    ),
    (
        "/v2/auth/users/foo",
        &["-XPUT", "-d", r#"{"user": "foo", "grant": ["foo"]}"#],
    ),
    (
        "/v2/auth/users/foo",
        &["-XPUT", "-d", r#"{"user": "foo", "revoke": ["nope"]}"#],
    ),
    (
        "/v2/auth/users/foo",
        &[
            "-XPUT",
            "-d",
            r#"{"user": "foo", "roles": ["x"], "grant": ["y"]}"#,
        ],
    ),
    (
        "/v2/auth/roles/foo",
        &[
            "-XPUT",
            "-d",
            r#"{"role":"foo","grant":{"kv":{"write":["/foo/*"]}}}"#,
        ],
    ),
    (
        "/v2/auth/roles/foo",
        &[
            "-XPUT",
            "-d",
            r#"{"role":"foo","grant":{"kv":{"write":["/foo/*"]}}}"#,
        ],
    ),
    (
        "/v2/auth/roles/foo",
        &[
            "-XPUT",
            "-d",
            r#"{"role":"foo","revoke":{"kv":{"write":["/foo/*"]}}}"#,
        ],
    ),
    (
        "/v2/auth/roles/root",
        &["-XPUT", "-d", r#"{"role":"root"}"#],
    ),
    ("/v2/auth/users", &[]),
    ("/v2/auth/users/foo", &[]),
    ("/v2/auth/users/nobody", &[]),
    ("/v2/auth/roles", &[]),
    ("/v2/auth/roles/foo", &[]),
    ("/v2/auth/roles/root", &[]),
    ("/v2/auth/roles/root", &["-XDELETE"]),
    ("/v2/auth/roles/a/b", &[]),
    ("/v2/auth/roles", &["-XPOST"]),
    ("/v2/auth/enable", &[]),
    ("/v2/auth/enable", &["-XPUT"]),
    (
        "/v2/auth/users/root",
        &["-XPUT", "-d", r#"{"user":"root","password":"a"}"#],
    ),
    ("/v2/auth/enable", &["-XPUT"]),
    ("/v2/auth/enable", &["-XPUT"]),
    ("/v2/auth/enable", &[]),
    ("/v2/auth/users", &[]),
    ("/v2/keys/foo/", &[]),
    ("/v2/keys/foo/", &["-u", "root:a"]),
    ("/v2/keys/foo/", &["-u", "foo:pass"]),
    ("/v2/keys/foo/", &["-u", "foo:"]),
    ("/v2/keys/foo/", &["-u", "nobody:x"]),
    ("/v2/keys/foo?recursive=true", &["-u", "foo:pass"]),
    (
        "/v2/keys/foo",
        &["-u", "foo:pass", "-XPUT", "-d", "value=x"],
    ),
    ("/v2/keys/foo", &["-XPUT", "-d", "value=guest"]),
    ("/v2/auth/users", &["-u", "root:a"]),
    ("/v2/auth/users/root", &["-u", "root:a", "-XDELETE"]),
    ("/v2/auth/enable", &["-u", "root:a", "-XDELETE"]),
    ("/v2/auth/enable", &["-XDELETE"]),
    ("/v2/auth/users/foo", &["-XDELETE"]),
    ("/v2/auth/users/foo", &["-XDELETE"]),
    ("/v2/auth/roles/foo", &["-XDELETE"]),
    ("/v2/auth/roles/foo", &["-XDELETE"]),
    ("/v2/auth/users", &[]),
];

/// `text` with what follows each `marker` up to a character outside `keep` set to `_`.
fn blank_after(text: &str, marker: &str, keep: fn(char) -> bool) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        out.push('_');
        rest = rest[i + marker.len()..].trim_start_matches(keep);
    }
    out.push_str(rest);
    out
}

/// Times, member IDs and ports differ between the two servers; everything else must not.
fn normalized(answer: &Answer) -> String {
    let body = blank_after(&answer.body, "127.0.0.1:", |c| c.is_ascii_digit());
    let mut body = blank_after(&body, "\"id\":\"", |c| c.is_ascii_hexdigit());
    while let Some(i) = body.find("\"expiration\":\"") {
        let start = i + "\"expiration\":\"".len();
        let Some(len) = body[start..].find('"') else {
            break;
        };
        body.replace_range(start..start + len, "_");
        body = body.replacen("\"expiration\":\"_\"", "\"expiration\":_", 1);
    }
    let headers: Vec<String> = ["content-type", "x-etcd-index", "allow", "location"]
        .iter()
        .filter_map(|h| answer.header(h).map(|v| format!("{h}: {v}")))
        .collect();
    format!("{} {}\n{}", answer.status, headers.join("\n"), body)
}

/// Runs `session` against a fresh etcd and a fresh one of ours; every answer must match.
fn compare_session(session: &[(&str, &[&str])]) {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = Single::start(REF_ETCD, &dir.path().join("etcd"), &["--enable-v2"], false);
    let ours = Single::start(OURS, &dir.path().join("ours"), &["--enable-v2"], false);
    let mut failures = Vec::new();
    for (path, args) in session {
        let theirs = normalized(&curl(&format!("{}{path}", etcd.client), args));
        let mine = normalized(&curl(&format!("{}{path}", ours.client), args));
        if theirs != mine {
            failures.push(format!(
                "{path} {args:?}\n  etcd: {theirs:?}\n  ours: {mine:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn v2_keys_and_members_answer_as_etcds() {
    compare_session(SESSION);
}

#[test]
fn v2_auth_answers_as_etcds() {
    compare_session(AUTH_SESSION);
}

#[test]
fn v2_streaming_watch_answers_as_etcds() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let etcd = Single::start(REF_ETCD, &dir.path().join("etcd"), &["--enable-v2"], false);
    let ours = Single::start(OURS, &dir.path().join("ours"), &["--enable-v2"], false);
    let watch = |server: &Single| {
        Command::new(CURL)
            .args(["-s", "-N", "--max-time", "4"])
            .arg(format!(
                "{}/v2/keys/w?wait=true&recursive=true&stream=true",
                server.client
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl")
    };
    let watchers = [watch(&etcd), watch(&ours)];
    // Both watches are registered once the store counts a watcher.
    for server in [&etcd, &ours] {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !curl(&format!("{}/v2/stats/store", server.client), &[])
            .body
            .contains("\"watchers\":1")
        {
            assert!(Instant::now() < deadline, "the watch did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for server in [&etcd, &ours] {
        for (path, args) in [
            ("/v2/keys/w/a", &["-XPUT", "-d", "value=1"][..]),
            ("/v2/keys/w/_hidden", &["-XPUT", "-d", "value=h"]),
            ("/v2/keys/other", &["-XPUT", "-d", "value=o"]),
            ("/v2/keys/w/a", &["-XDELETE"]),
            ("/v2/keys/w/b", &["-XPOST", "-d", "value=2"]),
        ] {
            curl(&format!("{}{path}", server.client), args);
        }
    }
    let [theirs, mine] = watchers
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().expect("curl").stdout).into_owned());
    assert_eq!(theirs.lines().count(), 3, "etcd's stream: {theirs}");
    assert_eq!(mine, theirs);
}

fn v2_put(url: &str, key: &str, form: &[&str]) -> Answer {
    let mut args = vec!["-XPUT"];
    for f in form {
        args.extend(["-d", f]);
    }
    curl(&format!("{url}/v2/keys/{key}"), &args)
}

fn v2_get(url: &str, key: &str) -> Answer {
    curl(&format!("{url}/v2/keys/{key}"), &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_store_survives_kill_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut member = common::EtcdProcess::start(&dir.path().join("m"), &["--enable-v2"]).await;
    let url = member.client_url.clone();
    for i in 0..50 {
        assert_eq!(
            v2_put(&url, &format!("d/k{i}"), &[&format!("value=v{i}")]).status,
            201
        );
    }
    let ttl = v2_put(&url, "soon", &["value=x", "ttl=2"]);
    assert_eq!(ttl.status, 201);
    let before = v2_get(&url, "d?recursive=true&sorted=true").body;
    let index = v2_get(&url, "d/k3")
        .header("x-etcd-index")
        .map(str::to_string);

    member.kill();
    member.spawn();
    member.wait_ready().await;

    assert_eq!(v2_get(&url, "d?recursive=true&sorted=true").body, before);
    // The index only moved forward: a restart publishes the member's attributes again,
    // which etcd mirrors in its v2 store too.
    let index_after = v2_get(&url, "d/k3")
        .header("x-etcd-index")
        .map(str::to_string);
    let parse = |i: &Option<String>| i.as_deref().and_then(|i| i.parse::<u64>().ok());
    assert!(
        parse(&index_after) >= parse(&index),
        "{index:?} -> {index_after:?}"
    );
    // The history came back too: a watch from the first write is answered from it.
    let first = v2_get(&url, "d/k0?wait=true&waitIndex=1");
    assert!(first.body.contains("\"value\":\"v0\""), "{first:?}");
    // The TTL key still expires, once.
    let deadline = Instant::now() + Duration::from_secs(15);
    while v2_get(&url, "soon").status != 404 {
        assert!(Instant::now() < deadline, "the TTL key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = curl(&format!("{url}/v2/stats/store"), &[]).body;
    assert!(stats.contains("\"expireCount\":1,"), "{stats}");
}

/// `expireCount` of a member's `/v2/stats/store`.
fn expire_count(stats: &str) -> u64 {
    let key = "\"expireCount\":";
    let at = stats.find(key).expect("expireCount") + key.len();
    stats[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_store_moves_in_snapshots_and_ttls_expire_once_across_leader_changes() {
    let mut options = ClusterOptions::new(3).arg("--snapshot-count", "20");
    options.args.push("--enable-v2".into());
    let mut cluster = Cluster::start(options).await;
    let leader = cluster.wait_leader(&[0, 1, 2]).await;
    let url = cluster.url(leader).to_string();
    for i in 0..60 {
        let put = v2_put(&url, &format!("keys/k{i:02}"), &[&format!("value=v{i}")]);
        assert_eq!(put.status, 201, "{put:?}");
    }
    let ttl = v2_put(&url, "lease-like", &["value=x", "ttl=3"]);
    assert_eq!(ttl.status, 201, "{ttl:?}");
    let created: u64 = ttl
        .header("x-etcd-index")
        .and_then(|i| i.parse().ok())
        .expect("an index");

    cluster.step("killing the leader while the TTL key is pending");
    cluster.kill(leader);
    let others: Vec<usize> = cluster
        .live()
        .into_iter()
        .filter(|s| *s != leader)
        .collect();
    let new_leader = cluster.wait_leader(&others).await;
    let url = cluster.url(new_leader).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while v2_get(&url, "lease-like?quorum=true").status != 404 {
        assert!(Instant::now() < deadline, "the TTL key never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.step("restarting the old leader; it must agree");
    cluster.restart(leader).await;

    cluster.step("writing past the log the leader keeps, so a new member needs a snapshot");
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut client = cluster.client(new_leader, Duration::from_secs(10)).await;
        writers.push(tokio::spawn(async move {
            for i in 0..700 {
                client
                    .put(format!("v3/{w}/{i}"), "x")
                    .await
                    .expect("v3 put");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    cluster.step("adding a member, which gets the v2 store in a snapshot");
    let new = cluster.add_member().await;
    assert!(
        cluster.members[new]
            .log()
            .contains("restored the backend from the leader's snapshot"),
        "the new member did not start from a snapshot: {}",
        cluster.members[new].log_tail(30)
    );
    let listing = v2_get(&url, "keys?recursive=true&sorted=true&quorum=true").body;
    let deadline = Instant::now() + Duration::from_secs(20);
    for slot in [0, 1, 2, new] {
        let member_url = cluster.url(slot).to_string();
        loop {
            // A plain read is this member's own store.
            let here = v2_get(&member_url, "keys?recursive=true&sorted=true").body;
            let stats = curl(&format!("{member_url}/v2/stats/store"), &[]).body;
            let gone = v2_get(&member_url, "lease-like").status == 404;
            if here == listing && gone {
                // A member that replayed the expiry counted it once; one that got it in a
                // snapshot never saw it happen.
                assert!(expire_count(&stats) <= 1, "{slot}: {stats}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {slot} has another v2 store: {here}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The change after the key's creation is its expiry.
    let expire = v2_get(
        &url,
        &format!("lease-like?wait=true&waitIndex={}", created + 1),
    );
    assert!(expire.body.contains("\"action\":\"expire\""), "{expire:?}");
}

/// etcdctl's v2 `backup` (etcdutl's `backup`) of a running member: started with
/// `--force-new-cluster`, the copy serves the v2 keys, and the v3 keys only `--with-v3`.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_of_a_running_member_restarts_as_a_new_cluster() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source");
    let mut member = common::EtcdProcess::start(&source, &["--enable-v2"]).await;
    let url = member.client_url.clone();
    member
        .client()
        .await
        .put("v3key", "123")
        .await
        .expect("v3 put");
    assert_eq!(v2_put(&url, "foo1", &["value=bar1"]).status, 201);

    for with_v3 in [false, true] {
        let backup_dir = dir.path().join(format!("backup-v3-{with_v3}"));
        let summary = etcdutl::backup::backup(&etcdutl::backup::BackupOptions {
            data_dir: source.clone(),
            backup_dir: backup_dir.clone(),
            with_v3,
            ..Default::default()
        })
        .expect("backup");
        assert_ne!(summary.member_id, 0);
        // The source is untouched and keeps serving.
        assert_eq!(v2_get(&url, "foo1").status, 200);

        let restored =
            common::EtcdProcess::start(&backup_dir, &["--enable-v2", "--force-new-cluster"]).await;
        let restored_url = restored.client_url.clone();
        let got = v2_get(&restored_url, "foo1");
        assert!(got.body.contains("\"value\":\"bar1\""), "{got:?}");
        let v3 = restored.client().await.get("v3key").await.expect("v3 get");
        assert_eq!(v3.kvs.len(), usize::from(with_v3), "with_v3 = {with_v3}");
        assert_eq!(v2_put(&restored_url, "foo2", &["value=bar2"]).status, 201);
        let members = curl(&format!("{restored_url}/v2/members"), &[]).body;
        assert_eq!(members.matches("\"id\"").count(), 1, "{members}");
        assert!(
            members.contains(&format!("{:x}", summary.member_id)),
            "the copy runs under its new ID: {members}"
        );
    }
    // A second backup into a used directory is refused, not merged.
    let again = etcdutl::backup::backup(&etcdutl::backup::BackupOptions {
        data_dir: source.clone(),
        backup_dir: dir.path().join("backup-v3-true"),
        ..Default::default()
    });
    assert!(again.is_err());
    member.kill();
}

/// etcdctl's `migrate` (etcdutl's) on one of our data dirs: the v2 keys become v3 keys at
/// their v2 modified index as revision, and revisions go on from there, as etcd's.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_copies_the_v2_keys_of_our_data_dir_into_v3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("m");
    let mut member = common::EtcdProcess::start(&data, &["--enable-v2"]).await;
    let url = member.client_url.clone();
    let mut indexes = Vec::new();
    for i in 0..3 {
        let put = v2_put(&url, &format!("foo_{i}"), &[&format!("value=bar_{i}")]);
        assert_eq!(put.status, 201, "{put:?}");
        indexes.push(put.header("x-etcd-index").expect("index").to_string());
    }
    assert_eq!(v2_put(&url, "dir/leaf", &["value=deep"]).status, 201);
    assert_eq!(
        v2_put(&url, "short", &["value=lived", "ttl=600"]).status,
        201
    );
    // A clean stop: the backend holds every applied write.
    let pid = member.child.as_ref().expect("running").id();
    let stopped = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    if let Some(mut child) = member.child.take() {
        child.wait().expect("wait");
    }

    let migrated = etcdutl::migrate::migrate(&data, None, true)
        .expect("migrate")
        .expect("v2 keys");
    assert_eq!(
        migrated.keys, 4,
        "three keys and the leaf; the TTL key left out (--no-ttl)"
    );

    member.spawn();
    member.wait_ready().await;
    let mut client = member.client().await;
    for (i, index) in indexes.iter().enumerate() {
        let got = client.get(format!("/foo_{i}")).await.expect("get");
        assert_eq!(got.kvs.len(), 1, "/foo_{i}");
        assert_eq!(got.kvs[0].value, format!("bar_{i}").into_bytes());
        assert_eq!(got.kvs[0].mod_revision.to_string(), *index);
    }
    assert_eq!(client.get("/dir/leaf").await.expect("get").kvs.len(), 1);
    assert!(client.get("/short").await.expect("get").kvs.is_empty());
    let put = client.put("test", "value").await.expect("put");
    let highest: i64 = v2_get(&url, "dir/leaf")
        .body
        .split("\"modifiedIndex\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("the leaf's index");
    let revision = put.header.expect("header").revision;
    assert_eq!(
        revision,
        highest + 1,
        "revisions continue after the migrated keys"
    );
    // The v2 keys are still there for v2 clients.
    assert_eq!(v2_get(&url, "foo_0").status, 200);
}

/// Bad input to the v2 API: a value over the request limit is refused with a v2 error and
/// changes nothing; the member keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_v2_value_is_refused_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let member = common::EtcdProcess::start(&dir.path().join("m"), &["--enable-v2"]).await;
    let url = member.client_url.clone();
    assert_eq!(v2_put(&url, "keep", &["value=kept"]).status, 201);
    let body = dir.path().join("big");
    let mut form = b"value=".to_vec();
    form.extend(std::iter::repeat_n(b'x', 2 << 20));
    std::fs::write(&body, form).expect("write body");
    let refused = curl(
        &format!("{url}/v2/keys/keep"),
        &["-XPUT", "--data-binary", &format!("@{}", body.display())],
    );
    assert_eq!(refused.status, 500, "{refused:?}");
    assert_eq!(
        refused.body,
        "{\"errorCode\":300,\"message\":\"Raft Internal Error\",\
         \"cause\":\"etcdserver: request is too large\",\"index\":0}\n"
    );
    let kept = v2_get(&url, "keep");
    assert!(kept.body.contains("\"value\":\"kept\""), "{kept:?}");
    assert_eq!(v2_put(&url, "after", &["value=ok"]).status, 201);
}
