//! Applying a committed v2 request (etcd's applierV2): which store operation each method and
//! its conditions mean.

use std::sync::Arc;

use etcd_api::etcdserverpb::Request as V2Request;

use super::error::{V2Error, code};
use super::event::Event;
use super::store::{Store, TtlOptions};

/// What a v2 request answered: the event, or etcd's v2 error.
pub type V2Outcome = Result<Arc<Event>, V2Error>;

/// Applies `req` to the store. `now` (unix nanoseconds, this member's clock) only shapes the
/// answer's TTL seconds. `None` for a SYNC, which answers nothing.
pub fn apply(store: &mut Store, req: &V2Request, now: i64) -> Option<V2Outcome> {
    let ttl = TtlOptions {
        expire: (req.expiration != 0).then_some(req.expiration),
        refresh: req.refresh.unwrap_or(false),
    };
    let p = req.path.as_str();
    let outcome = match req.method.as_str() {
        "POST" => store.create(p, req.dir, &req.val, true, ttl, now),
        "PUT" => match req.prev_exist {
            Some(true) if req.prev_index == 0 && req.prev_value.is_empty() => {
                store.update(p, &req.val, ttl, now)
            }
            Some(true) => {
                store.compare_and_swap(p, &req.prev_value, req.prev_index, &req.val, ttl, now)
            }
            Some(false) => store.create(p, req.dir, &req.val, false, ttl, now),
            None if req.prev_index > 0 || !req.prev_value.is_empty() => {
                store.compare_and_swap(p, &req.prev_value, req.prev_index, &req.val, ttl, now)
            }
            None => store.set(p, req.dir, &req.val, ttl, now),
        },
        "DELETE" if req.prev_index > 0 || !req.prev_value.is_empty() => {
            store.compare_and_delete(p, &req.prev_value, req.prev_index, now)
        }
        "DELETE" => store.delete(p, req.dir, req.recursive, now),
        "QGET" => store.get(p, req.recursive, now).map(Arc::new),
        "SYNC" => {
            store.delete_expired(req.time, now);
            return None;
        }
        _ => Err(V2Error::new(
            code::RAFT_INTERNAL,
            "etcdserver: unknown method",
            0,
        )),
    };
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn req(method: &str, path: &str, val: &str) -> V2Request {
        V2Request {
            method: method.into(),
            path: path.into(),
            val: val.into(),
            ..Default::default()
        }
    }

    fn ok(store: &mut Store, r: V2Request) -> Arc<Event> {
        apply(store, &r, NOW).unwrap().unwrap()
    }

    fn err(store: &mut Store, r: V2Request) -> V2Error {
        apply(store, &r, NOW).unwrap().unwrap_err()
    }

    #[test]
    fn set_get_create_update_and_their_errors() {
        let mut s = Store::new();
        let e = ok(&mut s, req("PUT", "/1/foo", "bar"));
        assert_eq!(
            e.to_json("/1", true),
            "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\
             \"modifiedIndex\":1,\"createdIndex\":1}}\n"
        );
        assert!(e.is_created());
        let e = ok(&mut s, req("PUT", "/1/foo", "baz"));
        assert!(!e.is_created());
        assert_eq!(e.prev_node.as_ref().unwrap().value.as_deref(), Some("bar"));
        assert_eq!(e.etcd_index, 2);

        let mut mk = req("PUT", "/1/foo", "x");
        mk.prev_exist = Some(false);
        let e = err(&mut s, mk);
        assert_eq!((e.code, e.cause.as_str(), e.index), (105, "/1/foo", 2));

        let mut update = req("PUT", "/1/nope", "x");
        update.prev_exist = Some(true);
        assert_eq!(err(&mut s, update).code, 100);

        // A file in the way of a directory.
        let e = err(&mut s, req("PUT", "/1/foo/bar", "x"));
        assert_eq!((e.code, e.cause.as_str()), (104, "/1/foo"));
        let e = err(&mut s, req("PUT", "/1", "x"));
        assert_eq!((e.code, e.cause.as_str()), (107, "/"));

        let got = s.get("/1/foo", false, NOW).unwrap();
        assert_eq!(got.node.value.as_deref(), Some("baz"));
        assert_eq!(s.get("/1/missing", false, NOW).unwrap_err().code, 100);
    }

    #[test]
    fn compare_and_swap_and_delete() {
        let mut s = Store::new();
        ok(&mut s, req("PUT", "/1/k", "one"));
        let mut cas = req("PUT", "/1/k", "two");
        cas.prev_value = "nope".into();
        let e = err(&mut s, cas.clone());
        assert_eq!((e.code, e.cause.as_str()), (101, "[nope != one]"));
        cas.prev_value = "one".into();
        assert_eq!(ok(&mut s, cas).action.as_str(), "compareAndSwap");
        let mut cad = req("DELETE", "/1/k", "");
        cad.prev_index = 1;
        let e = err(&mut s, cad.clone());
        assert_eq!((e.code, e.cause.as_str()), (101, "[1 != 2]"));
        cad.prev_index = 2;
        assert_eq!(ok(&mut s, cad).action.as_str(), "compareAndDelete");
        assert_eq!(s.get("/1/k", false, NOW).unwrap_err().code, 100);
    }

    #[test]
    fn directories_in_order_keys_and_recursive_delete() {
        let mut s = Store::new();
        let mut post = req("POST", "/1/queue", "a");
        let first = ok(&mut s, post.clone());
        assert_eq!(first.node.key, "/1/queue/00000000000000000001");
        post.val = "b".into();
        ok(&mut s, post);
        ok(&mut s, req("PUT", "/1/queue/_hidden", "h"));
        let listing = s.get("/1/queue", false, NOW).unwrap();
        assert!(listing.node.dir);
        let keys: Vec<_> = listing.node.nodes.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/1/queue/00000000000000000001",
                "/1/queue/00000000000000000002"
            ]
        );
        let e = err(&mut s, req("DELETE", "/1/queue", ""));
        assert_eq!(e.code, 102);
        let mut rmdir = req("DELETE", "/1/queue", "");
        rmdir.dir = true;
        assert_eq!(err(&mut s, rmdir.clone()).code, 108);
        rmdir.recursive = true;
        let e = ok(&mut s, rmdir);
        assert!(e.node.dir);
        assert!(s.get("/1/queue", false, NOW).is_err());
    }

    #[test]
    fn ttl_keys_expire_once_when_a_sync_passes_their_time() {
        let mut s = Store::new();
        let mut put = req("PUT", "/1/tmp", "v");
        put.expiration = NOW + 2_500_000_000;
        let e = ok(&mut s, put);
        assert_eq!(e.node.ttl, 3);
        assert!(e.to_json("/1", true).contains("\"ttl\":3"));
        let mut sync = req("SYNC", "", "");
        sync.time = NOW + 1_000_000_000;
        assert!(apply(&mut s, &sync, NOW).is_none());
        assert!(s.get("/1/tmp", false, NOW).is_ok());
        sync.time = NOW + 3_000_000_000;
        apply(&mut s, &sync, NOW);
        assert_eq!(s.get("/1/tmp", false, NOW).unwrap_err().code, 100);
        let index = s.index();
        apply(&mut s, &sync, NOW);
        assert_eq!(s.index(), index, "an expired key expires once");
        assert_eq!(s.stats().expires, 1);
        assert_eq!(s.next_expiry(), None);
    }

    #[test]
    fn a_watch_gets_the_next_change_or_a_past_one_from_history() {
        let mut s = Store::new();
        let mut w = s.watch("/1/k", false, false, 0).unwrap();
        ok(&mut s, req("PUT", "/1/k", "v"));
        assert_eq!(w.rx.try_recv().unwrap().index(), 1);
        ok(&mut s, req("PUT", "/1/other", "v"));
        let mut past = s.watch("/1/k", false, false, 1).unwrap();
        assert_eq!(past.rx.try_recv().unwrap().index(), 1);
        assert_eq!(s.watcher_count(), 0);
        // A deleted directory ends a watch on a key under it.
        ok(&mut s, req("PUT", "/1/d/x", "v"));
        let mut under = s.watch("/1/d/x", false, false, 0).unwrap();
        let mut rm = req("DELETE", "/1/d", "");
        rm.recursive = true;
        ok(&mut s, rm);
        assert_eq!(under.rx.try_recv().unwrap().action.as_str(), "delete");
    }

    #[test]
    fn restore_rebuilds_the_same_tree() {
        let mut s = Store::new();
        ok(&mut s, req("PUT", "/1/a/b/c", "v"));
        let mut ttl = req("PUT", "/1/t", "v");
        ttl.expiration = NOW + 10_000_000_000;
        ok(&mut s, ttl);
        let nodes: Vec<_> = s.nodes().into_iter().cloned().collect();
        let events: Vec<_> = s.history().events().map(|e| (**e).clone()).collect();
        let mut back = Store::restore(s.index(), nodes, events).unwrap();
        assert_eq!(
            back.get("/1", true, NOW).unwrap(),
            s.get("/1", true, NOW).unwrap()
        );
        assert_eq!(back.next_expiry(), Some(NOW + 10_000_000_000));
        assert_eq!(back.history().start_index(), 1);
    }
}
