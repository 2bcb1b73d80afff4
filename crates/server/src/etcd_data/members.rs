//! The membership as of the backend's applied index, as etcd 3.4 itself knows it: from the
//! v2 store in its snapshot (etcd 3.4 recovers members from there, not from its backend's
//! `members` bucket, which its `snapshot restore` leaves holding the old cluster), then every
//! membership change in the log up to that index. Changes after it are applied again on start.

use std::collections::BTreeMap;

use etcd_api::internalpb::{InternalRequest, MemberRecord, internal_request::Request};
use prost::Message;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType};

use crate::membership::Membership;

/// The members in a v2 store (`/0/members/<id>/raftAttributes` and `attributes`, and
/// `/0/removed_members/<id>`); `None` when it holds none.
pub fn from_v2_store(v2_store: &[u8]) -> Result<Option<Membership>, String> {
    if v2_store.is_empty() {
        return Ok(None);
    }
    let doc: serde_json::Value =
        serde_json::from_slice(v2_store).map_err(|e| format!("the v2 store is not JSON: {e}"))?;
    let children = |path: &str| -> Vec<(String, serde_json::Value)> {
        match doc.pointer(path) {
            Some(serde_json::Value::Object(map)) => {
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            _ => Vec::new(),
        }
    };
    let mut membership = Membership::default();
    for (hex_id, node) in children("/Root/Children/0/Children/members/Children") {
        let id = u64::from_str_radix(&hex_id, 16)
            .map_err(|_| format!("the v2 store has a member with a bad ID {hex_id:?}"))?;
        let value = |name: &str| -> Result<Option<serde_json::Value>, String> {
            match node.pointer(&format!("/Children/{name}/Value")) {
                Some(serde_json::Value::String(s)) => serde_json::from_str(s)
                    .map(Some)
                    .map_err(|e| format!("member {hex_id} {name}: {e}")),
                _ => Ok(None),
            }
        };
        let strings = |v: &Option<serde_json::Value>, field: &str| -> Vec<String> {
            v.as_ref()
                .and_then(|v| v.get(field))
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let raft = value("raftAttributes")?;
        let attrs = value("attributes")?;
        membership.members.insert(
            id,
            MemberRecord {
                id,
                name: attrs
                    .as_ref()
                    .and_then(|a| a.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string(),
                peer_urls: strings(&raft, "peerURLs"),
                client_urls: strings(&attrs, "clientURLs"),
                is_learner: raft
                    .as_ref()
                    .and_then(|r| r.get("isLearner"))
                    .and_then(|l| l.as_bool())
                    .unwrap_or(false),
            },
        );
    }
    for (hex_id, _) in children("/Root/Children/0/Children/removed_members/Children") {
        if let Ok(id) = u64::from_str_radix(&hex_id, 16) {
            membership.removed.insert(id);
        }
    }
    if membership.members.is_empty() && membership.removed.is_empty() {
        return Ok(None);
    }
    Ok(Some(membership))
}

/// Applies one of our (translated) entries' membership changes, if it has any.
pub fn apply(membership: &mut Membership, entry: &Entry) {
    match entry.entry_type {
        EntryType::EntryConfChange => {
            let mut cc = ConfChange::default();
            if protobuf::Message::merge_from_bytes(&mut cc, &entry.data).is_err() {
                return;
            }
            let record = MemberRecord::decode(cc.context.as_ref()).ok();
            match cc.change_type {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let is_learner = cc.change_type == ConfChangeType::AddLearnerNode;
                    let entry = membership.members.entry(cc.node_id).or_insert_with(|| {
                        let mut r = record.unwrap_or_default();
                        r.id = cc.node_id;
                        r
                    });
                    entry.is_learner = is_learner;
                }
                ConfChangeType::RemoveNode => {
                    membership.members.remove(&cc.node_id);
                    membership.removed.insert(cc.node_id);
                }
            }
        }
        _ => {
            let Ok(req) = InternalRequest::decode(entry.data.as_ref()) else {
                return;
            };
            match req.request {
                Some(Request::MemberAttributes(a)) => {
                    if let Some(m) = membership.members.get_mut(&a.member_id) {
                        m.name = a.name;
                        m.client_urls = a.client_urls;
                    }
                }
                Some(Request::MemberPeerUrls(u)) => {
                    if let Some(m) = membership.members.get_mut(&u.member_id) {
                        m.peer_urls = u.peer_urls;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Voters and learners of a membership, as Raft's configuration.
pub fn configuration(membership: &Membership) -> (Vec<u64>, Vec<u64>) {
    let (learners, voters): (BTreeMap<u64, bool>, BTreeMap<u64, bool>) = membership
        .members
        .values()
        .map(|m| (m.id, m.is_learner))
        .partition(|(_, learner)| *learner);
    (voters.into_keys().collect(), learners.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_from_the_v2_store() {
        let v2 = br#"{"Root":{"Children":{"0":{"Children":{
            "members":{"Children":{
              "2943212f5e2cf73":{"Children":{
                "raftAttributes":{"Value":"{\"peerURLs\":[\"http://127.0.0.1:23802\"]}"},
                "attributes":{"Value":"{\"name\":\"restored\",\"clientURLs\":[\"http://127.0.0.1:23792\"]}"}}},
              "a":{"Children":{"raftAttributes":{"Value":"{\"peerURLs\":[\"http://h:1\"],\"isLearner\":true}"}}}}},
            "removed_members":{"Children":{"b":{}}}}}}}}"#;
        let m = from_v2_store(v2).unwrap().unwrap();
        let first = &m.members[&0x2943212f5e2cf73];
        assert_eq!(first.name, "restored");
        assert_eq!(
            first.client_urls,
            vec!["http://127.0.0.1:23792".to_string()]
        );
        assert!(m.members[&0xa].is_learner);
        assert!(m.removed.contains(&0xb));
        assert_eq!(configuration(&m), (vec![0x2943212f5e2cf73], vec![0xa]));
        assert!(from_v2_store(br#"{"Root":{}}"#).unwrap().is_none());
    }
}
