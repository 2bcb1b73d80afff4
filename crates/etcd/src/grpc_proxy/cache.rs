//! The proxy's cache of serializable range answers, as etcd's grpc-proxy keeps one: every
//! range answer is kept (a linearizable one as its serializable twin), a serializable range
//! is answered from it when it can, and puts, deletes and txns through the proxy invalidate
//! the ranges they touch. Compared with etcd's:
//! - the key includes the caller's auth token, so one user never reads what only another may;
//! - answers at the latest revision (revision 0) live at most [`LATEST_TTL`], so writes made
//!   through other members are seen within it (etcd's can be stale for ever);
//! - the cache is bounded in bytes as well as in entries.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{RangeRequest, RangeResponse};
use prost::Message;

/// etcd's `DefaultMaxEntries`.
pub const MAX_ENTRIES: usize = 2048;
/// All cached answers together stay under this many (encoded) bytes.
pub const MAX_BYTES: usize = 64 << 20;
/// An answer larger than this is not cached: it would push out many small ones.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;
/// How long an answer at the latest revision may be served.
pub const LATEST_TTL: Duration = Duration::from_secs(1);

pub enum Lookup {
    Hit(RangeResponse),
    /// The request names a revision at or below a compaction this proxy made.
    Compacted,
    /// Not cached: the key to add the answer under ([`RangeCache::add_keyed`]), so the
    /// request is encoded once.
    Miss(CacheKey),
}

/// A request's place in the cache: its caller's token and the request, encoded.
pub struct CacheKey(Vec<u8>);

struct Entry {
    response: RangeResponse,
    bytes: usize,
    tick: u64,
    /// For answers at the latest revision: the keys they cover (`end` empty for one key,
    /// "\0" to the end of the key space) and when they stop being served.
    latest: Option<(Vec<u8>, Vec<u8>, Instant)>,
}

#[derive(Default)]
pub struct RangeCache {
    entries: HashMap<Vec<u8>, Entry>,
    /// Least recently used first.
    order: BTreeMap<u64, Vec<u8>>,
    next_tick: u64,
    bytes: usize,
    compacted: i64,
}

fn cache_key(token: Option<&[u8]>, request: &RangeRequest) -> CacheKey {
    let mut request = request.clone();
    request.serializable = true;
    let token = token.unwrap_or_default();
    let mut key = Vec::with_capacity(8 + token.len() + request.encoded_len());
    key.extend_from_slice(&(token.len() as u64).to_be_bytes());
    key.extend_from_slice(token);
    request.encode(&mut key).expect("a Vec grows as needed");
    CacheKey(key)
}

/// Whether `[a_start, a_end)` and `[b_start, b_end)` share a key, with etcd's conventions for
/// `end` (empty: the one key; "\0": to the end of the key space).
fn overlaps(a_start: &[u8], a_end: &[u8], b_start: &[u8], b_end: &[u8]) -> bool {
    // The exclusive upper bound of a range, None for "no bound".
    fn upper(start: &[u8], end: &[u8]) -> Option<Vec<u8>> {
        match end {
            [] => {
                let mut next = start.to_vec();
                next.push(0);
                Some(next)
            }
            [0] => None,
            end => Some(end.to_vec()),
        }
    }
    let below = |start: &[u8], upper: &Option<Vec<u8>>| match upper {
        None => true,
        Some(u) => start < u.as_slice(),
    };
    let (au, bu) = (upper(a_start, a_end), upper(b_start, b_end));
    below(b_start, &au) && below(a_start, &bu)
}

impl RangeCache {
    pub fn get(&mut self, token: Option<&[u8]>, request: &RangeRequest, now: Instant) -> Lookup {
        let key = cache_key(token, request);
        if request.revision > 0 && request.revision < self.compacted {
            self.remove(&key.0);
            return Lookup::Compacted;
        }
        let expired = match self.entries.get(&key.0) {
            None => return Lookup::Miss(key),
            Some(entry) => entry
                .latest
                .as_ref()
                .is_some_and(|(_, _, until)| now >= *until),
        };
        if expired {
            self.remove(&key.0);
            return Lookup::Miss(key);
        }
        let tick = self.tick();
        let entry = self.entries.get_mut(&key.0).expect("looked up above");
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.order.insert(tick, key.0);
        Lookup::Hit(entry.response.clone())
    }

    pub fn add(
        &mut self,
        token: Option<&[u8]>,
        request: &RangeRequest,
        response: &RangeResponse,
        now: Instant,
    ) {
        self.add_keyed(cache_key(token, request), request, response, now);
    }

    /// [`RangeCache::add`] under the key a [`Lookup::Miss`] gave.
    pub fn add_keyed(
        &mut self,
        CacheKey(key): CacheKey,
        request: &RangeRequest,
        response: &RangeResponse,
        now: Instant,
    ) {
        if request.revision != 0 && request.revision <= self.compacted {
            return;
        }
        let bytes = response.encoded_len();
        if bytes > MAX_ENTRY_BYTES {
            return;
        }
        self.remove(&key);
        let latest = (request.revision == 0).then(|| {
            (
                request.key.clone(),
                request.range_end.clone(),
                now + LATEST_TTL,
            )
        });
        let tick = self.tick();
        self.order.insert(tick, key.clone());
        self.bytes += bytes + key.len();
        self.entries.insert(
            key,
            Entry {
                response: response.clone(),
                bytes,
                tick,
                latest,
            },
        );
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    /// A write through the proxy touched `[key, end)`: answers at the latest revision that
    /// cover any of it are dropped. Answers at a given revision cannot change.
    pub fn invalidate(&mut self, key: &[u8], end: &[u8]) {
        let stale: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.latest
                    .as_ref()
                    .is_some_and(|(k, en, _)| overlaps(k, en, key, end))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    /// The members compacted at `revision`: older revisions are answered with etcd's error.
    pub fn compact(&mut self, revision: i64) {
        self.compacted = self.compacted.max(revision);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.tick);
            self.bytes -= entry.bytes + key.len();
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_api::etcdserverpb::ResponseHeader;

    fn range(key: &str, end: &str, revision: i64) -> RangeRequest {
        RangeRequest {
            key: key.into(),
            range_end: end.into(),
            revision,
            serializable: true,
            ..RangeRequest::default()
        }
    }

    fn answer(revision: i64) -> RangeResponse {
        RangeResponse {
            header: Some(ResponseHeader {
                revision,
                ..ResponseHeader::default()
            }),
            count: 1,
            ..RangeResponse::default()
        }
    }

    fn hit(lookup: Lookup) -> Option<i64> {
        match lookup {
            Lookup::Hit(r) => Some(r.header.unwrap().revision),
            _ => None,
        }
    }

    #[test]
    fn writes_invalidate_the_ranges_they_touch() {
        let now = Instant::now();
        let mut c = RangeCache::default();
        c.add(None, &range("a", "", 0), &answer(5), now);
        c.add(None, &range("b", "d", 0), &answer(5), now);
        c.add(None, &range("x", "\0", 0), &answer(5), now);
        c.add(None, &range("b", "d", 3), &answer(3), now);
        assert_eq!(hit(c.get(None, &range("a", "", 0), now)), Some(5));
        c.invalidate(b"c", b"");
        assert_eq!(hit(c.get(None, &range("b", "d", 0), now)), None);
        assert_eq!(hit(c.get(None, &range("a", "", 0), now)), Some(5));
        // An answer at a revision never changes.
        assert_eq!(hit(c.get(None, &range("b", "d", 3), now)), Some(3));
        c.invalidate(b"zz", b"");
        assert_eq!(hit(c.get(None, &range("x", "\0", 0), now)), None);
        c.invalidate(b"", b"\0");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn tokens_do_not_share_answers_and_latest_answers_expire() {
        let now = Instant::now();
        let mut c = RangeCache::default();
        c.add(Some(b"alice"), &range("a", "", 0), &answer(5), now);
        assert!(hit(c.get(Some(b"bob"), &range("a", "", 0), now)).is_none());
        assert!(hit(c.get(None, &range("a", "", 0), now)).is_none());
        assert_eq!(hit(c.get(Some(b"alice"), &range("a", "", 0), now)), Some(5));
        assert!(hit(c.get(Some(b"alice"), &range("a", "", 0), now + LATEST_TTL)).is_none());
    }

    #[test]
    fn compaction_and_bounds() {
        let now = Instant::now();
        let mut c = RangeCache::default();
        c.add(None, &range("a", "", 3), &answer(3), now);
        c.compact(4);
        assert!(matches!(
            c.get(None, &range("a", "", 3), now),
            Lookup::Compacted
        ));
        for i in 0..MAX_ENTRIES + 10 {
            c.add(None, &range(&format!("k{i}"), "", 0), &answer(1), now);
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        // The least recently used went first.
        assert!(hit(c.get(None, &range("k0", "", 0), now)).is_none());
        assert!(hit(c.get(None, &range(&format!("k{}", MAX_ENTRIES + 9), "", 0), now)).is_some());
    }
}
