//! Cluster membership: who the members are, and the IDs etcd derives for them.
//!
//! IDs must be the ones etcd computes from the same flags, so that a user moving between etcd and
//! us sees the same member and cluster IDs: a member's ID is the first 8 bytes (big-endian) of
//! SHA-1 over its sorted peer URLs, the cluster token and, for members added at runtime, the
//! time; the cluster's ID is SHA-1 over its sorted member IDs.

use std::collections::{BTreeMap, BTreeSet};

use etcd_api::etcdserverpb::Member as WireMember;
use etcd_api::internalpb::MemberRecord;
use sha1::{Digest, Sha1};
use url::Url;

use crate::error::ServerError;

/// The textual form etcd uses for a URL in IDs and member lists: Go's `url.URL.String()`,
/// which, unlike the `url` crate, does not add a trailing `/` to an empty path.
pub fn url_string(url: &Url) -> String {
    let s = url.as_str();
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() {
        s.strip_suffix('/').unwrap_or(s).to_string()
    } else {
        s.to_string()
    }
}

/// A member ID as etcd computes it. `added_at_unix_secs` is set only for members added with
/// MemberAdd (so that re-adding the same URLs gives a new ID).
pub fn member_id(
    peer_urls: &[String],
    cluster_token: &str,
    added_at_unix_secs: Option<i64>,
) -> u64 {
    let mut sorted = peer_urls.to_vec();
    sorted.sort();
    let mut hasher = Sha1::new();
    for url in &sorted {
        hasher.update(url.as_bytes());
    }
    hasher.update(cluster_token.as_bytes());
    if let Some(secs) = added_at_unix_secs {
        hasher.update(secs.to_string().as_bytes());
    }
    first_8_bytes(&hasher.finalize())
}

/// The cluster ID as etcd computes it from the member IDs of the initial cluster.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut sorted = member_ids.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for id in sorted {
        hasher.update(id.to_be_bytes());
    }
    first_8_bytes(&hasher.finalize())
}

fn first_8_bytes(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The members of the cluster as applied so far. Owned by the apply path; readers get copies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Membership {
    pub members: BTreeMap<u64, MemberRecord>,
    /// Members removed so far: a removed member that comes back is told so (etcd's
    /// "permanently removed"), never taken for one not added yet.
    pub removed: BTreeSet<u64>,
}

impl Membership {
    /// Builds the initial membership from `--initial-cluster` (name=url pairs; a name may appear
    /// several times, once per peer URL) and the cluster token.
    pub fn from_initial_cluster(
        initial_cluster: &[(String, Url)],
        cluster_token: &str,
    ) -> Result<Membership, ServerError> {
        let mut urls_by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, url) in initial_cluster {
            urls_by_name.entry(name).or_default().push(url_string(url));
        }
        let mut members = BTreeMap::new();
        for (name, peer_urls) in urls_by_name {
            let id = member_id(&peer_urls, cluster_token, None);
            if members.contains_key(&id) {
                return Err(ServerError::Config(format!(
                    "member count is unequal: two members of --initial-cluster share the ID {id:x}"
                )));
            }
            let mut peer_urls = peer_urls;
            peer_urls.sort();
            members.insert(
                id,
                MemberRecord {
                    id,
                    name: name.to_string(),
                    peer_urls,
                    client_urls: Vec::new(),
                    is_learner: false,
                },
            );
        }
        Ok(Membership {
            members,
            removed: BTreeSet::new(),
        })
    }

    pub fn cluster_id(&self) -> u64 {
        cluster_id(&self.members.keys().copied().collect::<Vec<_>>())
    }

    /// The member with this name and these advertised peer URLs, as etcd checks at bootstrap.
    pub fn find_self(&self, name: &str, advertise_peer_urls: &[Url]) -> Result<u64, ServerError> {
        let mut advertised: Vec<String> = advertise_peer_urls.iter().map(url_string).collect();
        advertised.sort();
        let member = self
            .members
            .values()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                ServerError::Config(format!(
                    "couldn't find local name {name:?} in the initial cluster configuration"
                ))
            })?;
        if member.peer_urls != advertised {
            return Err(ServerError::Config(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} \
                 (the advertised peer URLs of this member must match its --initial-cluster entry)",
                name,
                member.peer_urls.join(","),
                advertised.join(",")
            )));
        }
        Ok(member.id)
    }

    /// Every member's peer URLs, for the transport.
    pub fn peer_urls(&self) -> BTreeMap<u64, Vec<String>> {
        self.members
            .iter()
            .map(|(id, m)| (*id, m.peer_urls.clone()))
            .collect()
    }

    pub fn voters(&self) -> Vec<u64> {
        self.members
            .values()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect()
    }

    pub fn learners(&self) -> Vec<u64> {
        self.members
            .values()
            .filter(|m| m.is_learner)
            .map(|m| m.id)
            .collect()
    }

    pub fn to_wire(&self) -> Vec<WireMember> {
        self.members.values().map(record_to_wire).collect()
    }
}

pub fn record_to_wire(m: &MemberRecord) -> WireMember {
    WireMember {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn url_string_matches_go() {
        assert_eq!(
            url_string(&url("http://localhost:2380")),
            "http://localhost:2380"
        );
        assert_eq!(
            url_string(&url("https://10.0.0.1:2380")),
            "https://10.0.0.1:2380"
        );
    }

    /// The IDs etcd 3.4 prints for `etcd` started with no flags: member 8e9e05c52164694d in
    /// cluster cdf818194e3a8c32 (see `etcdctl member list` against a default etcd).
    #[test]
    fn default_member_and_cluster_ids_match_etcd() {
        let m = Membership::from_initial_cluster(
            &[("default".to_string(), url("http://localhost:2380"))],
            "etcd-cluster",
        )
        .unwrap();
        let id = m
            .find_self("default", &[url("http://localhost:2380")])
            .unwrap();
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", m.cluster_id()), "cdf818194e3a8c32");
    }

    #[test]
    fn find_self_rejects_unknown_name_and_wrong_urls() {
        let m =
            Membership::from_initial_cluster(&[("a".to_string(), url("http://127.0.0.1:1"))], "t")
                .unwrap();
        assert!(m.find_self("b", &[url("http://127.0.0.1:1")]).is_err());
        assert!(m.find_self("a", &[url("http://127.0.0.1:2")]).is_err());
        assert!(m.find_self("a", &[url("http://127.0.0.1:1")]).is_ok());
    }
}
