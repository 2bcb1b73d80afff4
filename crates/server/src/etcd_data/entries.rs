//! etcd's log entries turned into ours, one for one at the same index and term, so the log a
//! converted member keeps means what etcd's meant (members of one cluster converted separately
//! agree entry by entry) and the entries its backend had not applied yet apply as etcd would
//! have applied them.
//!
//! - An `InternalRaftRequest` keeps its request: our proposals carry etcd's request messages.
//!   Reads that went through the log (ranges, auth gets and lists) become no-ops; so do etcd
//!   3.5's cluster-version and downgrade entries. A 3.4 user add or password change carries the
//!   password itself; it is hashed here, as our proposers do, so no password stays in the log.
//! - etcd 3.4's own v2 writes (a member publishing its name and client URLs, the cluster
//!   version) become our member-attributes entry or a no-op. Any other v2 write is a user's
//!   v2 key: refused, since our v2 store is not there yet to keep it.
//! - A ConfChange keeps its type, with the member JSON turned into our member record; etcd's
//!   UpdateNode (new peer URLs), which raft-rs has no type for, becomes our member-peer-URLs
//!   entry, as our own member updates are.

use etcd_api::etcdfiles::{self, ConfChange as EtcdConfChange};
use etcd_api::etcdserverpb::{InternalRaftRequest, Request as V2Request};
use etcd_api::internalpb::{
    AuthenticateRecord, InternalRequest, MemberAttributes, MemberPeerUrls, MemberRecord, Noop,
    RequestAuth, internal_request::Request,
};
use prost::Message;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType};

/// etcd's bcrypt cost (`bcrypt.DefaultCost`).
const BCRYPT_COST: u32 = 10;

/// Why one entry could not be carried over.
#[derive(Debug, PartialEq, Eq)]
pub enum Untranslatable {
    /// A user's v2 write, which needs our v2 store.
    V2Write(String),
    /// Something etcd would not have written.
    Malformed(String),
}

/// Translates one etcd entry into ours, at the same index and term.
pub fn translate(entry: &etcdfiles::Entry) -> Result<Entry, Untranslatable> {
    let (entry_type, data) = match entry.r#type {
        0 if entry.data.is_empty() => (EntryType::EntryNormal, Vec::new()),
        0 => match normal(&entry.data)? {
            Some(request) => (EntryType::EntryNormal, request.encode_to_vec()),
            None => (EntryType::EntryNormal, Vec::new()),
        },
        1 => conf_change(&entry.data)?,
        2 => {
            return Err(Untranslatable::Malformed(
                "a ConfChangeV2 entry, which etcd 3.4/3.5 never propose".into(),
            ));
        }
        other => {
            return Err(Untranslatable::Malformed(format!(
                "an entry of unknown type {other}"
            )));
        }
    };
    Ok(Entry {
        entry_type,
        term: entry.term,
        index: entry.index,
        data: data.into(),
        ..Default::default()
    })
}

fn noop(id: u64) -> InternalRequest {
    InternalRequest {
        id,
        request: Some(Request::Noop(Noop {})),
        ..Default::default()
    }
}

/// A normal entry: an `InternalRaftRequest` or, failing that, a v2 `Request` (etcd's order).
fn normal(data: &[u8]) -> Result<Option<InternalRequest>, Untranslatable> {
    if let Ok(r) = InternalRaftRequest::decode(data)
        && let Some(request) = internal(r)?
    {
        return Ok(Some(request));
    }
    match V2Request::decode(data) {
        Ok(v2) if !v2.method.is_empty() => v2_request(&v2).map(Some),
        _ => Err(Untranslatable::Malformed(
            "a normal entry that is neither an InternalRaftRequest nor a v2 Request".into(),
        )),
    }
}

/// `None` when no request field is set (then the bytes may be a v2 `Request`).
fn internal(r: InternalRaftRequest) -> Result<Option<InternalRequest>, Untranslatable> {
    let header = r.header.unwrap_or_default();
    let id = if header.id != 0 { header.id } else { r.id };
    let auth = (!header.username.is_empty()).then(|| RequestAuth {
        user: header.username.clone(),
        revision: header.auth_revision,
    });
    if let Some(v2) = r.v2 {
        return v2_request(&v2).map(Some);
    }
    let request = if let Some(x) = r.put {
        Request::Put(x)
    } else if let Some(x) = r.delete_range {
        Request::DeleteRange(x)
    } else if let Some(x) = r.txn {
        Request::Txn(x)
    } else if let Some(x) = r.compaction {
        Request::Compaction(x)
    } else if let Some(x) = r.lease_grant {
        Request::LeaseGrant(x)
    } else if let Some(x) = r.lease_revoke {
        Request::LeaseRevoke(x)
    } else if let Some(x) = r.alarm {
        Request::Alarm(x)
    } else if let Some(x) = r.lease_checkpoint {
        Request::LeaseCheckpoint(x)
    } else if let Some(x) = r.auth_enable {
        Request::AuthEnable(x)
    } else if let Some(x) = r.auth_disable {
        Request::AuthDisable(x)
    } else if let Some(x) = r.authenticate {
        Request::Authenticate(AuthenticateRecord {
            name: x.name,
            simple_token: x.simple_token,
        })
    } else if let Some(mut x) = r.auth_user_add {
        let no_password = x.options.as_ref().is_some_and(|o| o.no_password);
        if x.hashed_password.is_empty() && !no_password {
            x.hashed_password = hash(&x.password)?;
        }
        x.password.clear();
        Request::AuthUserAdd(x)
    } else if let Some(mut x) = r.auth_user_change_password {
        if x.hashed_password.is_empty() {
            x.hashed_password = hash(&x.password)?;
        }
        x.password.clear();
        Request::AuthUserChangePassword(x)
    } else if let Some(x) = r.auth_user_delete {
        Request::AuthUserDelete(x)
    } else if let Some(x) = r.auth_user_grant_role {
        Request::AuthUserGrantRole(x)
    } else if let Some(x) = r.auth_user_revoke_role {
        Request::AuthUserRevokeRole(x)
    } else if let Some(x) = r.auth_role_add {
        Request::AuthRoleAdd(x)
    } else if let Some(x) = r.auth_role_delete {
        Request::AuthRoleDelete(x)
    } else if let Some(x) = r.auth_role_grant_permission {
        Request::AuthRoleGrantPermission(x)
    } else if let Some(x) = r.auth_role_revoke_permission {
        Request::AuthRoleRevokePermission(x)
    } else if let Some(x) = r.cluster_member_attr_set {
        let attrs = x.member_attributes.unwrap_or_default();
        Request::MemberAttributes(MemberAttributes {
            member_id: x.member_id,
            name: attrs.name,
            client_urls: attrs.client_urls,
        })
    } else if r.range.is_some()
        || r.auth_status.is_some()
        || r.auth_user_get.is_some()
        || r.auth_user_list.is_some()
        || r.auth_role_get.is_some()
        || r.auth_role_list.is_some()
        || r.cluster_version_set.is_some()
        || r.downgrade_info_set.is_some()
    {
        Request::Noop(Noop {})
    } else {
        return Ok(None);
    };
    Ok(Some(InternalRequest {
        id,
        proposer_id: 0,
        auth,
        request: Some(request),
    }))
}

fn hash(password: &str) -> Result<String, Untranslatable> {
    bcrypt::hash(password, BCRYPT_COST)
        .map_err(|e| Untranslatable::Malformed(format!("cannot hash a password: {e}")))
}

/// etcd 3.4's own v2 writes; anything else is a user's v2 key.
fn v2_request(v2: &V2Request) -> Result<InternalRequest, Untranslatable> {
    let path = v2.path.as_str();
    if let Some(rest) = path.strip_prefix("/0/members/")
        && let Some(hex_id) = rest.strip_suffix("/attributes")
        && v2.method == "PUT"
    {
        let member_id = u64::from_str_radix(hex_id, 16).map_err(|_| {
            Untranslatable::Malformed(format!("member attributes for a bad ID: {path}"))
        })?;
        #[derive(serde::Deserialize)]
        struct Attrs {
            #[serde(default)]
            name: String,
            #[serde(default, rename = "clientURLs")]
            client_urls: Option<Vec<String>>,
        }
        let attrs: Attrs = serde_json::from_str(&v2.val).map_err(|e| {
            Untranslatable::Malformed(format!("member attributes of {hex_id}: {e}"))
        })?;
        return Ok(InternalRequest {
            id: v2.id,
            request: Some(Request::MemberAttributes(MemberAttributes {
                member_id,
                name: attrs.name,
                client_urls: attrs.client_urls.unwrap_or_default(),
            })),
            ..Default::default()
        });
    }
    // etcd's own bookkeeping (the cluster version, member records) and reads through the log.
    if path == "/0"
        || path.starts_with("/0/")
        || matches!(v2.method.as_str(), "GET" | "QGET" | "SYNC" | "HEAD")
    {
        return Ok(noop(v2.id));
    }
    Err(Untranslatable::V2Write(format!("{} {path}", v2.method)))
}

/// etcd's member JSON (`membership.Member`).
#[derive(serde::Deserialize)]
pub struct EtcdMember {
    #[serde(default)]
    pub id: u64,
    #[serde(default, rename = "peerURLs")]
    pub peer_urls: Option<Vec<String>>,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "clientURLs")]
    pub client_urls: Option<Vec<String>>,
    #[serde(default, rename = "isLearner")]
    pub is_learner: bool,
}

impl EtcdMember {
    pub fn parse(json: &[u8]) -> Result<EtcdMember, String> {
        serde_json::from_slice(json).map_err(|e| format!("not etcd's member JSON: {e}"))
    }

    pub fn into_record(self) -> MemberRecord {
        MemberRecord {
            id: self.id,
            name: self.name,
            peer_urls: self.peer_urls.unwrap_or_default(),
            client_urls: self.client_urls.unwrap_or_default(),
            is_learner: self.is_learner,
        }
    }
}

fn conf_change(data: &[u8]) -> Result<(EntryType, Vec<u8>), Untranslatable> {
    let cc = EtcdConfChange::decode(data)
        .map_err(|e| Untranslatable::Malformed(format!("an undecodable ConfChange: {e}")))?;
    let member = || -> Result<MemberRecord, Untranslatable> {
        let mut record = EtcdMember::parse(&cc.context)
            .map_err(Untranslatable::Malformed)?
            .into_record();
        record.id = cc.node_id;
        Ok(record)
    };
    let (change_type, context) = match cc.r#type {
        0 => (ConfChangeType::AddNode, member()?.encode_to_vec()),
        1 => (ConfChangeType::RemoveNode, Vec::new()),
        3 => (ConfChangeType::AddLearnerNode, member()?.encode_to_vec()),
        2 => {
            let update = InternalRequest {
                id: cc.id,
                request: Some(Request::MemberPeerUrls(MemberPeerUrls {
                    member_id: cc.node_id,
                    peer_urls: member()?.peer_urls,
                })),
                ..Default::default()
            };
            return Ok((EntryType::EntryNormal, update.encode_to_vec()));
        }
        other => {
            return Err(Untranslatable::Malformed(format!(
                "a ConfChange of unknown type {other}"
            )));
        }
    };
    let ours = ConfChange {
        change_type,
        node_id: cc.node_id,
        context: context.into(),
        id: cc.id,
        ..Default::default()
    };
    let bytes = protobuf::Message::write_to_bytes(&ours)
        .map_err(|e| Untranslatable::Malformed(format!("cannot encode a ConfChange: {e}")))?;
    Ok((EntryType::EntryConfChange, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::etcdserverpb::{AuthUserAddRequest, PutRequest, RequestHeader};

    fn normal_entry(data: Vec<u8>) -> etcdfiles::Entry {
        etcdfiles::Entry {
            term: 3,
            index: 7,
            r#type: 0,
            data,
        }
    }

    fn decode(e: &Entry) -> InternalRequest {
        InternalRequest::decode(e.data.as_ref()).unwrap()
    }

    #[test]
    fn a_put_keeps_its_request_and_user() {
        let put = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let r = InternalRaftRequest {
            header: Some(RequestHeader {
                id: 42,
                username: "alice".into(),
                auth_revision: 5,
            }),
            put: Some(put.clone()),
            ..Default::default()
        };
        let e = translate(&normal_entry(r.encode_to_vec())).unwrap();
        assert_eq!((e.term, e.index), (3, 7));
        let ours = decode(&e);
        assert_eq!(ours.id, 42);
        assert_eq!(ours.request, Some(Request::Put(put)));
        assert_eq!(ours.auth.unwrap().user, "alice");
    }

    #[test]
    fn a_34_password_is_hashed_and_dropped() {
        let r = InternalRaftRequest {
            auth_user_add: Some(AuthUserAddRequest {
                name: "bob".into(),
                password: "secret".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ours = decode(&translate(&normal_entry(r.encode_to_vec())).unwrap());
        let Some(Request::AuthUserAdd(add)) = ours.request else {
            panic!("not a user add");
        };
        assert!(add.password.is_empty());
        assert!(bcrypt::verify("secret", &add.hashed_password).unwrap());
    }

    #[test]
    fn v2_member_attributes_and_version_are_etcds_own() {
        let publish = V2Request {
            id: 9,
            method: "PUT".into(),
            path: "/0/members/8e9e05c52164694d/attributes".into(),
            val: r#"{"name":"infra1","clientURLs":["http://127.0.0.1:2379"]}"#.into(),
            ..Default::default()
        };
        let ours = decode(&translate(&normal_entry(publish.encode_to_vec())).unwrap());
        assert_eq!(
            ours.request,
            Some(Request::MemberAttributes(MemberAttributes {
                member_id: 0x8e9e05c52164694d,
                name: "infra1".into(),
                client_urls: vec!["http://127.0.0.1:2379".into()],
            }))
        );
        let version = V2Request {
            method: "PUT".into(),
            path: "/0/version".into(),
            val: "3.4.0".into(),
            ..Default::default()
        };
        let ours = decode(&translate(&normal_entry(version.encode_to_vec())).unwrap());
        assert_eq!(ours.request, Some(Request::Noop(Noop {})));
        let user_key = V2Request {
            method: "PUT".into(),
            path: "/1/foo".into(),
            val: "bar".into(),
            ..Default::default()
        };
        assert_eq!(
            translate(&normal_entry(user_key.encode_to_vec())),
            Err(Untranslatable::V2Write("PUT /1/foo".into()))
        );
    }

    #[test]
    fn conf_changes_carry_the_member() {
        let cc = EtcdConfChange {
            r#type: 3,
            node_id: 5,
            context: br#"{"id":5,"peerURLs":["http://10.0.0.5:2380"],"isLearner":true}"#.to_vec(),
            id: 77,
        };
        let e = translate(&etcdfiles::Entry {
            term: 2,
            index: 4,
            r#type: 1,
            data: cc.encode_to_vec(),
        })
        .unwrap();
        assert_eq!(e.entry_type, EntryType::EntryConfChange);
        let mut ours = ConfChange::default();
        protobuf::Message::merge_from_bytes(&mut ours, &e.data).unwrap();
        assert_eq!(ours.change_type, ConfChangeType::AddLearnerNode);
        assert_eq!((ours.node_id, ours.id), (5, 77));
        let record = MemberRecord::decode(ours.context.as_ref()).unwrap();
        assert_eq!(record.peer_urls, vec!["http://10.0.0.5:2380".to_string()]);
        assert!(record.is_learner);

        let update = EtcdConfChange {
            r#type: 2,
            node_id: 5,
            context: br#"{"id":5,"peerURLs":["http://10.0.0.6:2380"]}"#.to_vec(),
            id: 78,
        };
        let e = translate(&etcdfiles::Entry {
            term: 2,
            index: 5,
            r#type: 1,
            data: update.encode_to_vec(),
        })
        .unwrap();
        assert_eq!(e.entry_type, EntryType::EntryNormal);
        assert_eq!(
            decode(&e).request,
            Some(Request::MemberPeerUrls(MemberPeerUrls {
                member_id: 5,
                peer_urls: vec!["http://10.0.0.6:2380".into()],
            }))
        );
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for data in [
            vec![0xff, 0xff, 0xff],
            vec![0x0a, 0x05, 1],
            b"\x12\x03PUT".to_vec(),
        ] {
            let _ = translate(&normal_entry(data.clone()));
            let _ = translate(&etcdfiles::Entry {
                term: 1,
                index: 1,
                r#type: 1,
                data,
            });
        }
        assert!(matches!(
            translate(&etcdfiles::Entry {
                r#type: 9,
                ..Default::default()
            }),
            Err(Untranslatable::Malformed(_))
        ));
    }
}
