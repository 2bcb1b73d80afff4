//! The lessor: which leases exist, their TTLs, which keys are attached, and (on the leader)
//! when each expires.
//!
//! Pure state: no I/O, no clock of its own. The replicated part (leases, TTLs, attachments)
//! changes only through `grant`, `revoke` and the attach/detach calls the apply path makes, so
//! every member holds the same. Expiry instants are member-local: only the leader keeps real
//! deadlines (set on promotion and on keep-alive); followers keep none, as in etcd, so a new
//! leader gives every lease its full TTL again plus an election timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// etcd's largest TTL, in seconds.
pub const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    #[error("etcdserver: requested lease not found")]
    NotFound,
    #[error("etcdserver: lease already exists")]
    Exists,
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// The TTL granted, in seconds (after raising to the minimum).
    pub ttl_secs: i64,
    pub keys: BTreeSet<Vec<u8>>,
    /// Set only on the leader.
    expiry: Option<Instant>,
}

impl Lease {
    /// Seconds left as the leader sees it; `None` on a follower (no deadline kept).
    pub fn remaining_secs(&self, now: Instant) -> Option<i64> {
        self.expiry.map(|e| {
            let left = e.saturating_duration_since(now);
            // etcd rounds up: a lease with 0.3 s left reports 1.
            left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0)
        })
    }
}

#[derive(Debug, Default)]
pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
    /// The lease each attached key is on: the reverse of every lease's `keys`, so a put learns
    /// the key's previous lease without reading the previous record (etcd's `itemMap`).
    key_leases: HashMap<Vec<u8>, i64>,
    /// Seconds; TTLs below it are raised to it (etcd: 1.5 election timeouts, rounded up).
    min_ttl_secs: i64,
    /// True while this member is the leader and keeps deadlines.
    primary: bool,
}

impl Lessor {
    pub fn new(min_ttl_secs: i64) -> Lessor {
        Lessor {
            leases: BTreeMap::new(),
            key_leases: HashMap::new(),
            min_ttl_secs: min_ttl_secs.max(1),
            primary: false,
        }
    }

    /// etcd's minimum TTL for an election timeout: 3/2 of it, rounded up to whole seconds.
    pub fn min_ttl_for(election_timeout: Duration) -> i64 {
        let millis = election_timeout.as_millis() as i64 * 3 / 2;
        (millis + 999) / 1000
    }

    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// The keys attached to lease `id` (none for an unknown lease).
    pub fn keys_of(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Grants a lease (apply path). Returns the TTL actually granted.
    pub fn grant(&mut self, id: i64, ttl_secs: i64, now: Instant) -> Result<i64, LeaseError> {
        if ttl_secs > MAX_LEASE_TTL_SECS {
            return Err(LeaseError::TtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let ttl_secs = ttl_secs.max(self.min_ttl_secs);
        let expiry = self
            .primary
            .then(|| now + Duration::from_secs(ttl_secs as u64));
        self.leases.insert(
            id,
            Lease {
                id,
                ttl_secs,
                keys: BTreeSet::new(),
                expiry,
            },
        );
        Ok(ttl_secs)
    }

    /// Restores a lease read from the backend at start (no deadline until promoted).
    pub fn restore(&mut self, id: i64, ttl_secs: i64) {
        self.leases.entry(id).or_insert(Lease {
            id,
            ttl_secs,
            keys: BTreeSet::new(),
            expiry: None,
        });
    }

    /// Removes a lease (apply path), returning the keys that were attached: the caller deletes
    /// them in the same revision.
    pub fn revoke(&mut self, id: i64) -> Result<BTreeSet<Vec<u8>>, LeaseError> {
        let keys = self
            .leases
            .remove(&id)
            .map(|l| l.keys)
            .ok_or(LeaseError::NotFound)?;
        for key in &keys {
            self.key_leases.remove(key);
        }
        Ok(keys)
    }

    /// Attaches `key` to lease `id` (if it exists), detaching it from any lease it was on.
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        lease.keys.insert(key.to_vec());
        if let Some(previous) = self.key_leases.insert(key.to_vec(), id)
            && previous != id
            && let Some(old) = self.leases.get_mut(&previous)
        {
            old.keys.remove(key);
        }
    }

    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
        if self.key_leases.get(key) == Some(&id) {
            self.key_leases.remove(key);
        }
    }

    /// The lease `key` is attached to, or 0.
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.key_leases.get(key).copied().unwrap_or(0)
    }

    /// Keep-alive, on the leader: the lease gets its full TTL again. Returns that TTL.
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64, LeaseError> {
        let lease = self.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        lease.expiry = Some(now + Duration::from_secs(lease.ttl_secs as u64));
        Ok(lease.ttl_secs)
    }

    /// This member became the leader: every lease gets its full TTL plus `extend` (an election
    /// timeout), so leases do not expire because of the leader change itself.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        for lease in self.leases.values_mut() {
            lease.expiry = Some(now + Duration::from_secs(lease.ttl_secs as u64) + extend);
        }
    }

    /// This member is no longer the leader: it stops keeping deadlines.
    pub fn demote(&mut self) {
        self.primary = false;
        for lease in self.leases.values_mut() {
            lease.expiry = None;
        }
    }

    /// Leases past their deadline, at most `limit` of them, oldest deadline first. Only the
    /// leader has deadlines, so this is empty elsewhere.
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut expired: Vec<(Instant, i64)> = self
            .leases
            .values()
            .filter_map(|l| l.expiry.filter(|e| *e <= now).map(|e| (e, l.id)))
            .collect();
        expired.sort_unstable();
        expired.into_iter().take(limit).map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_matches_etcd() {
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(1000)), 2);
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(3000)), 5);
    }

    #[test]
    fn grant_raises_ttl_and_refuses_duplicates_and_huge_ttls() {
        let now = Instant::now();
        let mut l = Lessor::new(2);
        assert_eq!(l.grant(1, 1, now), Ok(2));
        assert_eq!(l.grant(1, 10, now), Err(LeaseError::Exists));
        assert_eq!(
            l.grant(2, MAX_LEASE_TTL_SECS + 1, now),
            Err(LeaseError::TtlTooLarge)
        );
        assert_eq!(l.get(1).unwrap().ttl_secs, 2);
    }

    #[test]
    fn only_the_primary_expires_leases() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.grant(7, 5, now).unwrap();
        assert!(l.expired(now + Duration::from_secs(100), 10).is_empty());
        l.promote(now, Duration::from_secs(1));
        assert!(l.expired(now + Duration::from_secs(5), 10).is_empty());
        assert_eq!(l.expired(now + Duration::from_secs(6), 10), vec![7]);
        l.demote();
        assert!(l.expired(now + Duration::from_secs(100), 10).is_empty());
    }

    #[test]
    fn renew_resets_the_deadline() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.promote(now, Duration::ZERO);
        l.grant(3, 10, now).unwrap();
        let later = now + Duration::from_secs(8);
        assert_eq!(l.renew(3, later), Ok(10));
        assert!(l.expired(now + Duration::from_secs(12), 10).is_empty());
        assert_eq!(l.get(3).unwrap().remaining_secs(later), Some(10));
        assert_eq!(l.renew(4, later), Err(LeaseError::NotFound));
    }

    #[test]
    fn attaching_to_another_lease_moves_the_key() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.grant(1, 10, now).unwrap();
        l.grant(2, 10, now).unwrap();
        l.attach(1, b"k");
        l.attach(2, b"k");
        assert_eq!(l.lease_of(b"k"), 2);
        assert!(
            l.get(1).unwrap().keys.is_empty(),
            "the old lease lost the key"
        );
        // Revoking the old lease must not touch the key.
        assert!(l.revoke(1).unwrap().is_empty());
        assert_eq!(l.lease_of(b"k"), 2);
        // A stale detach from a lease the key is no longer on changes nothing.
        l.detach(1, b"k");
        assert_eq!(l.lease_of(b"k"), 2);
    }

    #[test]
    fn revoke_returns_attached_keys() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.grant(9, 10, now).unwrap();
        l.attach(9, b"a");
        l.attach(9, b"b");
        l.detach(9, b"a");
        l.attach(42, b"ignored: no such lease");
        assert_eq!(l.lease_of(b"b"), 9);
        assert_eq!(l.lease_of(b"a"), 0, "detached");
        let keys = l.revoke(9).unwrap();
        assert_eq!(l.lease_of(b"b"), 0, "revoked");
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), vec![b"b".to_vec()]);
        assert_eq!(l.revoke(9), Err(LeaseError::NotFound));
    }

    #[test]
    fn expired_is_bounded_and_oldest_first() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.promote(now, Duration::ZERO);
        for id in 1..=5 {
            l.grant(id, 10 + id, now).unwrap();
        }
        assert_eq!(l.expired(now + Duration::from_secs(100), 2), vec![1, 2]);
    }
}
