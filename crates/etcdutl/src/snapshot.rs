//! `snapshot status` and `snapshot restore` of etcd 3.4 snapshot files (a bbolt db, usually
//! followed by its SHA-256), as clientv3/snapshot's v3Manager does them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::pb;
use crate::wal::{self, WalWriter};
use etcd_bbolt::{Bucket, Db};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Bolt(#[from] etcd_bbolt::BoltError),
    #[error("{0}")]
    Msg(String),
}

fn msg(s: impl Into<String>) -> SnapshotError {
    SnapshotError::Msg(s.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub hash: u32,
    pub revision: i64,
    pub total_key: i64,
    pub total_size: i64,
}

/// The status of a db file: CRC-32C over bucket names, keys and values, the newest revision
/// in the `key` bucket, the number of keys, the file's used size.
pub fn status(path: &Path) -> Result<Status, SnapshotError> {
    std::fs::metadata(path)
        .map_err(|e| msg(format!("stat {}: {}", path.display(), go_io_err(&e))))?;
    let db = Db::open(path)?;
    let errs = db.check();
    if !errs.is_empty() {
        return Err(msg(format!(
            "snapshot file integrity check failed. {} errors found.\n{}",
            errs.len(),
            errs.join("\n")
        )));
    }
    let (buckets, _) = db.read_all()?;
    let mut crc = 0u32;
    let mut st = Status {
        hash: 0,
        revision: 0,
        total_key: 0,
        total_size: db.size() as i64,
    };
    for (name, b) in &buckets {
        crc = crc32c::crc32c_append(crc, name);
        for (k, v) in b {
            crc = crc32c::crc32c_append(crc, k);
            crc = crc32c::crc32c_append(crc, v);
            if name == b"key" && k.len() >= 8 {
                st.revision = i64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]));
            }
            st.total_key += 1;
        }
    }
    st.hash = crc;
    Ok(st)
}

fn go_io_err(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

pub struct RestoreConfig {
    pub snapshot_path: PathBuf,
    pub name: String,
    pub output_data_dir: PathBuf,
    pub output_wal_dir: PathBuf,
    pub peer_urls: Vec<String>,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub skip_hash_check: bool,
}

/// A member of the new cluster: its ID as etcd computes it from peer URLs and token.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
}

fn sha1(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b: Vec<u8> = Vec::new();
    for u in &urls {
        b.extend_from_slice(u.as_bytes());
    }
    b.extend_from_slice(token.as_bytes());
    let h = sha1(&b);
    u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut b = Vec::new();
    for id in ids {
        b.extend_from_slice(&id.to_be_bytes());
    }
    let h = sha1(&b);
    u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

/// types.NewURLs: each URL checked (scheme, host:port, no path), then sorted.
pub fn parse_urls(urls: &[String]) -> Result<Vec<String>, SnapshotError> {
    let mut out = Vec::new();
    for u in urls {
        let u = u.trim();
        let Some((scheme, rest)) = u.split_once("://") else {
            return Err(msg(format!(
                "URL scheme must be http, https, unix, or unixs: {u}"
            )));
        };
        if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
            return Err(msg(format!(
                "URL scheme must be http, https, unix, or unixs: {u}"
            )));
        }
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !has_port {
            return Err(msg(format!(
                "URL address does not have the form \"host:port\": {u}"
            )));
        }
        if !path.is_empty() {
            return Err(msg(format!("URL must not contain a path: {u}")));
        }
        out.push(u.to_string());
    }
    out.sort();
    Ok(out)
}

/// `--initial-cluster` as name → sorted URLs.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, SnapshotError> {
    let mut raw: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in s.split(',') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        raw.entry(k.to_string()).or_default().push(v.to_string());
    }
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        out.insert(k, parse_urls(&v)?);
    }
    Ok(out)
}

pub fn members_from(
    cluster: &BTreeMap<String, Vec<String>>,
    token: &str,
) -> Result<Vec<Member>, SnapshotError> {
    let mut members: Vec<Member> = Vec::new();
    for (name, urls) in cluster {
        let id = member_id(urls, token);
        if members.iter().any(|m| m.id == id) {
            return Err(msg(format!("member exists with identical ID {id:x}")));
        }
        if id == 0 {
            return Err(msg("cannot use 0 as member ID"));
        }
        members.push(Member {
            id,
            name: name.clone(),
            peer_urls: urls.clone(),
        });
    }
    members.sort_by_key(|m| m.id);
    Ok(members)
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_strs(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(",")
    )
}

/// membership.Member as JSON (the ConfChange context).
fn member_json(m: &Member) -> String {
    format!(
        "{{\"id\":{},\"peerURLs\":{},\"name\":{}}}",
        m.id,
        json_strs(&m.peer_urls),
        json_str(&m.name)
    )
}

/// The v2 store holding only the members' raft attributes, as `store.Save()` writes it.
fn v2_store_json(members: &[Member]) -> String {
    const NO_EXPIRE: &str = "\"ExpireTime\":\"0001-01-01T00:00:00Z\"";
    let mut children = Vec::new();
    let mut events = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let idx = i + 1;
        let id = format!("{:x}", m.id);
        let attrs = format!("{{\"peerURLs\":{}}}", json_strs(&m.peer_urls));
        children.push(format!(
            "{}:{{\"Path\":\"/0/members/{id}\",\"CreatedIndex\":{idx},\"ModifiedIndex\":{idx},{NO_EXPIRE},\"Value\":\"\",\"Children\":{{\"raftAttributes\":{{\"Path\":\"/0/members/{id}/raftAttributes\",\"CreatedIndex\":{idx},\"ModifiedIndex\":{idx},{NO_EXPIRE},\"Value\":{},\"Children\":null}}}}}}",
            json_str(&id),
            json_str(&attrs)
        ));
        events.push(format!(
            "{{\"action\":\"create\",\"node\":{{\"key\":\"/0/members/{id}/raftAttributes\",\"value\":{},\"modifiedIndex\":{idx},\"createdIndex\":{idx}}}}}",
            json_str(&attrs)
        ));
    }
    let n = members.len();
    let mut queue = events.clone();
    queue.resize(1000, "null".to_string());
    format!(
        "{{\"Root\":{{\"Path\":\"/\",\"CreatedIndex\":0,\"ModifiedIndex\":0,{NO_EXPIRE},\"Value\":\"\",\"Children\":{{\"0\":{{\"Path\":\"/0\",\"CreatedIndex\":0,\"ModifiedIndex\":0,{NO_EXPIRE},\"Value\":\"\",\"Children\":{{\"members\":{{\"Path\":\"/0/members\",\"CreatedIndex\":1,\"ModifiedIndex\":1,{NO_EXPIRE},\"Value\":\"\",\"Children\":{{{}}}}}}}}},\"1\":{{\"Path\":\"/1\",\"CreatedIndex\":0,\"ModifiedIndex\":0,{NO_EXPIRE},\"Value\":\"\",\"Children\":{{}}}}}}}},\"WatcherHub\":{{\"EventHistory\":{{\"Queue\":{{\"Events\":[{}],\"Size\":{n},\"Front\":0,\"Back\":{n},\"Capacity\":1000}},\"StartIndex\":1,\"LastIndex\":{n}}}}},\"CurrentIndex\":{n},\"Stats\":{{\"getsSuccess\":0,\"getsFail\":0,\"setsSuccess\":0,\"setsFail\":0,\"deleteSuccess\":0,\"deleteFail\":0,\"updateSuccess\":0,\"updateFail\":0,\"createSuccess\":{n},\"createFail\":0,\"compareAndSwapSuccess\":0,\"compareAndSwapFail\":0,\"compareAndDeleteSuccess\":0,\"compareAndDeleteFail\":0,\"expireCount\":0,\"watchers\":0}},\"CurrentVersion\":2}}",
        children.join(","),
        queue.join(",")
    )
}

fn log(msg: &str, fields: &[(&str, String)]) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let mut s = format!(
        "{{\"level\":\"info\",\"ts\":{ts},\"caller\":\"snapshot/v3_snapshot.go\",\"msg\":{}",
        json_str(msg)
    );
    for (k, v) in fields {
        s.push_str(&format!(",{}:{}", json_str(k), v));
    }
    s.push('}');
    eprintln!("{s}");
}

fn has_checksum(n: u64) -> bool {
    n % 512 == 32
}

/// Restores a snapshot into a new data dir that etcd 3.4 starts from.
pub fn restore(cfg: &RestoreConfig) -> Result<(), SnapshotError> {
    let peer_urls = parse_urls(&cfg.peer_urls)?;
    let cluster = parse_initial_cluster(&cfg.initial_cluster)?;
    // ServerConfig.VerifyBootstrap
    if cluster.is_empty() {
        return Err(msg("initial cluster unset and no discovery URL found"));
    }
    let Some(local) = cluster.get(&cfg.name) else {
        return Err(msg(format!(
            "couldn't find local name {} in the initial cluster configuration",
            json_str(&cfg.name)
        )));
    };
    let mut seen = std::collections::BTreeSet::new();
    for urls in cluster.values() {
        for u in urls {
            if !seen.insert(u.clone()) {
                return Err(msg(format!(
                    "initial cluster {} has duplicate url {u}",
                    cfg.initial_cluster
                )));
            }
        }
    }
    if *local != peer_urls {
        return Err(msg(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from \"{}\") != \"{}\"(resolved from \"{}\"))",
            cfg.name,
            local.join(","),
            peer_urls.join(","),
            peer_urls.join(","),
            peer_urls.join(","),
            local.join(","),
            local.join(",")
        )));
    }
    let members = members_from(&cluster, &cfg.initial_cluster_token)?;
    let cid = cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());

    let data_dir = &cfg.output_data_dir;
    if data_dir.exists() {
        return Err(msg(format!(
            "data-dir {} exists",
            json_str(&data_dir.to_string_lossy())
        )));
    }
    let wal_dir = &cfg.output_wal_dir;
    if wal_dir != &data_dir.join("member").join("wal") && wal_dir.exists() {
        return Err(msg(format!(
            "wal-dir {} exists",
            json_str(&wal_dir.to_string_lossy())
        )));
    }
    let snap_dir = data_dir.join("member").join("snap");
    log(
        "restoring snapshot",
        &[
            ("path", json_str(&cfg.snapshot_path.to_string_lossy())),
            ("wal-dir", json_str(&wal_dir.to_string_lossy())),
            ("data-dir", json_str(&data_dir.to_string_lossy())),
            ("snap-dir", json_str(&snap_dir.to_string_lossy())),
        ],
    );

    // saveDB: the db without its hash, checked, with the new consistent index.
    let mut bytes = std::fs::read(&cfg.snapshot_path).map_err(|e| {
        msg(format!(
            "open {}: {}",
            cfg.snapshot_path.display(),
            go_io_err(&e)
        ))
    })?;
    if bytes.len() < 32 {
        return Err(msg("EOF"));
    }
    let sha = bytes[bytes.len() - 32..].to_vec();
    let has_hash = has_checksum(bytes.len() as u64);
    if has_hash {
        bytes.truncate(bytes.len() - 32);
    }
    if !has_hash && !cfg.skip_hash_check {
        return Err(msg("snapshot missing hash but --skip-hash-check=false"));
    }
    if has_hash && !cfg.skip_hash_check {
        let got = ring::digest::digest(&ring::digest::SHA256, &bytes);
        if got.as_ref() != sha.as_slice() {
            return Err(msg(format!(
                "expected sha256 {}, got {}",
                go_bytes(&sha),
                go_bytes(got.as_ref())
            )));
        }
    }
    let db = Db::from_bytes(bytes)?;
    let page_size = db.meta.page_size as usize;
    let (mut buckets, _) = db.read_all()?;
    let commit = members.len() as u64;
    for name in [&b"key"[..], b"meta", b"lease"] {
        if !buckets.iter().any(|(n, _)| n == name) {
            buckets.push((name.to_vec(), Bucket::new()));
        }
    }
    for (name, b) in buckets.iter_mut() {
        if name == b"meta" {
            b.insert(b"consistent_index".to_vec(), commit.to_be_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(&snap_dir)?;
    write_private(
        &snap_dir.join("db"),
        &etcd_bbolt::write(&buckets, page_size),
    )?;

    // saveWALAndSnap: one ConfChange entry per member at term 1, then the snapshot.
    let local_id = members
        .iter()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .unwrap_or(0);
    for m in &members {
        log(
            "added member",
            &[
                ("cluster-id", json_str(&format!("{cid:x}"))),
                ("local-member-id", json_str("0")),
                ("added-peer-id", json_str(&format!("{:x}", m.id))),
                ("added-peer-peer-urls", json_strs(&m.peer_urls)),
            ],
        );
    }
    let mut w = WalWriter::create(&pb::metadata(local_id, cid));
    for (i, m) in members.iter().enumerate() {
        let cc = pb::conf_change(0, m.id, member_json(m).as_bytes());
        let e = pb::entry(1, 1, (i + 1) as u64, Some(&cc));
        w.record(wal::ENTRY, Some(&e));
    }
    let term = 1u64;
    w.record(
        wal::STATE,
        Some(&pb::hard_state(term, members[0].id, commit)),
    );
    let store = v2_store_json(&members);
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let snap = pb::raft_snapshot(store.as_bytes(), &ids, commit, term);
    let crc = crc32c::crc32c(&snap);
    write_private(
        &snap_dir.join(format!("{term:016x}-{commit:016x}.snap")),
        &pb::snap_file(crc, &snap),
    )?;
    w.record(wal::SNAPSHOT, Some(&pb::wal_snapshot(commit, term)));
    w.write_to(wal_dir)?;
    log(
        "restored snapshot",
        &[
            ("path", json_str(&cfg.snapshot_path.to_string_lossy())),
            ("wal-dir", json_str(&wal_dir.to_string_lossy())),
            ("data-dir", json_str(&data_dir.to_string_lossy())),
            ("snap-dir", json_str(&snap_dir.to_string_lossy())),
        ],
    );
    Ok(())
}

/// Go's `%v` of a byte slice: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    format!(
        "[{}]",
        b.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_match_etcd() {
        // etcdctl snapshot restore --initial-cluster n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2390
        // (token etcd-cluster) gives these IDs.
        let a = member_id(&["http://127.0.0.1:2390".to_string()], "etcd-cluster");
        let b = member_id(&["http://127.0.0.1:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{a:x}"), "75fb7df1dacfc315");
        assert_eq!(format!("{b:x}"), "b71f75320dc06a6c");
    }

    #[test]
    fn parses_initial_cluster() {
        let c = parse_initial_cluster("a=http://x:1,b=http://y:2,a=http://z:3").unwrap();
        assert_eq!(
            c["a"],
            vec!["http://x:1".to_string(), "http://z:3".to_string()]
        );
        assert!(parse_initial_cluster("a=ftp://x:1").is_err());
        assert!(parse_initial_cluster("a=http://x").is_err());
    }
}
