//! The lessor: which leases exist, their TTLs, which keys are attached, and (on the leader)
//! when each expires.
//!
//! Pure state: no I/O, no clock of its own. The replicated part (leases, TTLs, attachments)
//! changes only through `grant`, `revoke` and the attach/detach calls the apply path makes, so
//! every member holds the same. Expiry instants are member-local: only the leader keeps real
//! deadlines (set on promotion and on keep-alive); followers keep none, as in etcd, so a new
//! leader gives every lease its full TTL again plus an election timeout.
//!
//! The leader's deadlines are also kept in order (`deadlines`), so finding the expired leases
//! looks at those only, not at every lease: with 100,000 leases renewed thousands of times a
//! second, a scan of all of them under the lock every check would hold up renewals and applies.

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
    /// Where the lease sits in the lessor's `deadlines`: its expiry, or a retry time once it
    /// has been handed out as expired.
    queued: Option<Instant>,
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
    /// Every lease with a deadline, by (queued time, id): the front is the next to expire.
    deadlines: BTreeSet<(Instant, i64)>,
}

impl Lessor {
    pub fn new(min_ttl_secs: i64) -> Lessor {
        Lessor {
            leases: BTreeMap::new(),
            key_leases: HashMap::new(),
            min_ttl_secs: min_ttl_secs.max(1),
            primary: false,
            deadlines: BTreeSet::new(),
        }
    }

    /// Sets lease `id`'s deadline (none to clear it), keeping `deadlines` in step.
    fn set_expiry(&mut self, id: i64, expiry: Option<Instant>) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        if let Some(old) = lease.queued.take() {
            self.deadlines.remove(&(old, id));
        }
        lease.expiry = expiry;
        if let Some(at) = expiry {
            lease.queued = Some(at);
            self.deadlines.insert((at, id));
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
        self.leases.insert(
            id,
            Lease {
                id,
                ttl_secs,
                keys: BTreeSet::new(),
                expiry: None,
                queued: None,
            },
        );
        if self.primary {
            self.set_expiry(id, Some(now + Duration::from_secs(ttl_secs as u64)));
        }
        Ok(ttl_secs)
    }

    /// Restores a lease read from the backend at start (no deadline until promoted).
    pub fn restore(&mut self, id: i64, ttl_secs: i64) {
        self.leases.entry(id).or_insert(Lease {
            id,
            ttl_secs,
            keys: BTreeSet::new(),
            expiry: None,
            queued: None,
        });
    }

    /// Removes a lease (apply path), returning the keys that were attached: the caller deletes
    /// them in the same revision.
    pub fn revoke(&mut self, id: i64) -> Result<BTreeSet<Vec<u8>>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        if let Some(queued) = lease.queued {
            self.deadlines.remove(&(queued, id));
        }
        let keys = lease.keys;
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
        let ttl_secs = self.leases.get(&id).ok_or(LeaseError::NotFound)?.ttl_secs;
        self.set_expiry(id, Some(now + Duration::from_secs(ttl_secs as u64)));
        Ok(ttl_secs)
    }

    /// This member became the leader: every lease gets its full TTL plus `extend` (an election
    /// timeout), so leases do not expire because of the leader change itself.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        self.deadlines.clear();
        for lease in self.leases.values_mut() {
            let at = now + Duration::from_secs(lease.ttl_secs as u64) + extend;
            lease.expiry = Some(at);
            lease.queued = Some(at);
            self.deadlines.insert((at, lease.id));
        }
    }

    /// This member is no longer the leader: it stops keeping deadlines.
    pub fn demote(&mut self) {
        self.primary = false;
        self.deadlines.clear();
        for lease in self.leases.values_mut() {
            lease.expiry = None;
            lease.queued = None;
        }
    }

    /// Leases past their deadline, at most `limit` of them, oldest deadline first. Only the
    /// leader has deadlines, so this is empty elsewhere. Each lease handed out is queued again
    /// at `now + retry` (its deadline unchanged), so while its revoke is on the way it is not
    /// handed out again, and if the revoke is lost it is retried then (etcd: 3 s).
    pub fn take_expired(&mut self, now: Instant, limit: usize, retry: Duration) -> Vec<i64> {
        let mut expired = Vec::new();
        while expired.len() < limit {
            let Some(&(at, id)) = self.deadlines.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, id));
            let retry_at = now + retry;
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.queued = Some(retry_at);
                self.deadlines.insert((retry_at, id));
            }
            expired.push(id);
        }
        expired
    }

    /// Asserts that `deadlines` holds exactly the leases' queued times (tests).
    #[cfg(test)]
    fn check_deadlines(&self) {
        let queued: BTreeSet<(Instant, i64)> = self
            .leases
            .values()
            .filter_map(|l| l.queued.map(|q| (q, l.id)))
            .collect();
        assert_eq!(queued, self.deadlines);
        assert!(
            self.leases
                .values()
                .all(|l| l.queued.is_some() == l.expiry.is_some())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(3);

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
        assert!(
            l.take_expired(now + Duration::from_secs(100), 10, RETRY)
                .is_empty()
        );
        l.promote(now, Duration::from_secs(1));
        assert!(
            l.take_expired(now + Duration::from_secs(5), 10, RETRY)
                .is_empty()
        );
        assert_eq!(
            l.take_expired(now + Duration::from_secs(6), 10, RETRY),
            vec![7]
        );
        l.demote();
        assert!(
            l.take_expired(now + Duration::from_secs(100), 10, RETRY)
                .is_empty()
        );
    }

    #[test]
    fn renew_resets_the_deadline() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.promote(now, Duration::ZERO);
        l.grant(3, 10, now).unwrap();
        let later = now + Duration::from_secs(8);
        assert_eq!(l.renew(3, later), Ok(10));
        assert!(
            l.take_expired(now + Duration::from_secs(12), 10, RETRY)
                .is_empty()
        );
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
        assert_eq!(
            l.take_expired(now + Duration::from_secs(100), 2, RETRY),
            vec![1, 2]
        );
    }

    #[test]
    fn an_expired_lease_is_handed_out_once_then_retried() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        l.promote(now, Duration::ZERO);
        l.grant(1, 5, now).unwrap();
        l.grant(2, 5, now).unwrap();
        let due = now + Duration::from_secs(5);
        assert_eq!(l.take_expired(due, 10, RETRY), vec![1, 2]);
        // Their revokes are on the way: not handed out again until the retry time.
        assert!(
            l.take_expired(due + Duration::from_secs(2), 10, RETRY)
                .is_empty()
        );
        // Lease 1's revoke applied; lease 2's was lost, so it comes back once.
        l.revoke(1).unwrap();
        assert_eq!(l.take_expired(due + RETRY, 10, RETRY), vec![2]);
        // A keep-alive that wins the race gives it its full TTL again.
        l.renew(2, due + RETRY).unwrap();
        assert!(l.take_expired(due + RETRY + RETRY, 10, RETRY).is_empty());
        l.check_deadlines();
    }

    #[test]
    fn deadlines_follow_every_change() {
        let now = Instant::now();
        let mut l = Lessor::new(1);
        for id in 1..=50 {
            l.grant(id, id % 7 + 1, now).unwrap();
        }
        l.check_deadlines();
        l.promote(now, Duration::from_secs(1));
        l.check_deadlines();
        for id in (1..=50).step_by(3) {
            l.renew(id, now + Duration::from_secs(id as u64)).unwrap();
        }
        for id in (2..=50).step_by(5) {
            l.revoke(id).unwrap();
        }
        l.grant(99, 2, now).unwrap();
        l.check_deadlines();
        // Handed out in deadline order, each once.
        let mut order = Vec::new();
        let mut at = now;
        while at < now + Duration::from_secs(100) {
            order.extend(l.take_expired(at, 4, Duration::from_secs(1000)));
            at += Duration::from_millis(250);
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            order.len(),
            "a lease handed out twice: {order:?}"
        );
        assert_eq!(order.len(), l.len());
        let deadline = |id: &i64| l.get(*id).unwrap().expiry.unwrap();
        assert!(order.windows(2).all(|w| deadline(&w[0]) <= deadline(&w[1])));
        l.check_deadlines();
        l.demote();
        l.check_deadlines();
        assert!(
            l.take_expired(at + Duration::from_secs(5000), 100, RETRY)
                .is_empty()
        );
    }
}
