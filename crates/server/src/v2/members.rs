//! The membership as etcd 3.4 mirrors it in its v2 store (`/0/members/<id>/raftAttributes`,
//! `/0/members/<id>/attributes`, `/0/removed_members/<id>`, `/0/version`), written when the
//! same entries apply. v2 clients never read these keys, but they move the store index as
//! in etcd, so indexes a v2 client knows from etcd (`waitIndex`, `--after-index`) mean the
//! same here, and a v2 store is laid out as etcd's for the tools that read one.

use etcd_api::internalpb::MemberRecord;

use super::json::JsonWriter;
use super::store::{Store, TtlOptions};
use crate::config::CLUSTER_VERSION;

const MEMBERS: &str = "/0/members";
const REMOVED: &str = "/0/removed_members";
const VERSION: &str = "/0/version";

fn member_key(id: u64) -> String {
    format!("{MEMBERS}/{id:x}")
}

fn raft_attributes(peer_urls: &[String], is_learner: bool) -> String {
    let mut w = JsonWriter::default();
    w.begin_object();
    w.begin_array_field("peerURLs");
    for u in peer_urls {
        w.element_str(u);
    }
    w.end_array();
    if is_learner {
        w.field_bool("isLearner", true);
    }
    w.end_object();
    let mut s = w.finish_line();
    s.pop();
    s
}

fn attributes(name: &str, client_urls: &[String]) -> String {
    let mut w = JsonWriter::default();
    w.begin_object();
    if !name.is_empty() {
        w.field_str("name", name);
    }
    if !client_urls.is_empty() {
        w.begin_array_field("clientURLs");
        for u in client_urls {
            w.element_str(u);
        }
        w.end_array();
    }
    w.end_object();
    let mut s = w.finish_line();
    s.pop();
    s
}

/// Writes `value` at `p` the way etcd does when the key should exist (update), falling back
/// to a set for a store that never had it (one made before these keys were kept).
fn update_or_set(store: &mut Store, p: &str, value: &str, now: i64) {
    if store.update(p, value, TtlOptions::default(), now).is_err() {
        let _ = store.set(p, false, value, TtlOptions::default(), now);
    }
}

/// A member joined (or a learner was promoted: `promoted`).
pub fn added(store: &mut Store, member: &MemberRecord, promoted: bool, now: i64) {
    let p = format!("{}/raftAttributes", member_key(member.id));
    let value = raft_attributes(&member.peer_urls, member.is_learner);
    let created = !promoted
        && store
            .create(&p, false, &value, false, TtlOptions::default(), now)
            .is_ok();
    if !created {
        update_or_set(store, &p, &value, now);
    }
}

/// A member's peer URLs changed.
pub fn updated(store: &mut Store, member: &MemberRecord, now: i64) {
    let p = format!("{}/raftAttributes", member_key(member.id));
    update_or_set(
        store,
        &p,
        &raft_attributes(&member.peer_urls, member.is_learner),
        now,
    );
}

pub fn removed(store: &mut Store, id: u64, now: i64) {
    let _ = store.delete(&member_key(id), true, true, now);
    let _ = store.create(
        &format!("{REMOVED}/{id:x}"),
        false,
        "",
        false,
        TtlOptions::default(),
        now,
    );
}

/// A member published its name and client URLs. The first publish also records the
/// cluster version, which etcd's leader sets once its members have published.
pub fn published(store: &mut Store, member: &MemberRecord, now: i64) {
    let p = format!("{}/attributes", member_key(member.id));
    let _ = store.set(
        &p,
        false,
        &attributes(&member.name, &member.client_urls),
        TtlOptions::default(),
        now,
    );
    if store.get(VERSION, false, now).is_err() {
        let _ = store.set(VERSION, false, CLUSTER_VERSION, TtlOptions::default(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_member_moves_the_index_as_in_etcd() {
        let mut store = Store::new();
        let member = MemberRecord {
            id: 0xabc,
            name: "m1".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec!["http://127.0.0.1:2379".into()],
            is_learner: false,
        };
        added(&mut store, &member, false, 0);
        published(&mut store, &member, 0);
        // etcd 3.4's first user write on a fresh single member lands at index 4.
        assert_eq!(store.index(), 3);
        let raft = store
            .get("/0/members/abc/raftAttributes", false, 0)
            .unwrap();
        assert_eq!(
            raft.node.value.as_deref(),
            Some("{\"peerURLs\":[\"http://127.0.0.1:2380\"]}")
        );
        let attrs = store.get("/0/members/abc/attributes", false, 0).unwrap();
        assert_eq!(
            attrs.node.value.as_deref(),
            Some("{\"name\":\"m1\",\"clientURLs\":[\"http://127.0.0.1:2379\"]}")
        );
        removed(&mut store, 0xabc, 0);
        assert!(store.get("/0/members/abc", false, 0).is_err());
        assert!(store.get("/0/removed_members/abc", false, 0).is_ok());
    }
}
