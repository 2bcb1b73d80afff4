//! Reading past changes back as watch events, for watchers that start behind the current
//! revision.
//!
//! Events come straight from the `key` table, which is in revision order. As in etcd's
//! watchable store, a delete event's `kv` holds the key and the delete's revision as
//! `mod_revision`; `prev_kv` is not filled here (read it with a range at `revision - 1`).

use etcd_api::mvccpb::event::EventType;
use etcd_api::mvccpb::{Event, KeyValue};
use prost::Message;

use crate::MvccError;
use crate::backend::KEY_TABLE;
use crate::revision::RevKey;
use crate::store::Store;

impl Store {
    /// The changes at main revisions `start_rev..=end_rev` (`end_rev` <= 0 or above the
    /// current revision means the current revision), one entry per revision, oldest first.
    /// Stops at the first revision boundary after `max_events` events, so a revision is never
    /// split. Fails with Compacted if `start_rev` is below the compacted revision (etcd's
    /// watch rule).
    pub fn events(
        &self,
        start_rev: i64,
        end_rev: i64,
        max_events: usize,
    ) -> Result<Vec<(i64, Vec<Event>)>, MvccError> {
        let ((lo, hi), rtxn) = self.inner.snapshot(|st| {
            if start_rev < st.compact_rev {
                return Err(MvccError::Compacted);
            }
            let hi = if end_rev <= 0 || end_rev > st.current_rev {
                st.current_rev
            } else {
                end_rev
            };
            Ok((start_rev.max(1), hi))
        })?;
        let mut out: Vec<(i64, Vec<Event>)> = Vec::new();
        if lo > hi {
            return Ok(out);
        }
        let table = rtxn.open_table(KEY_TABLE)?;
        let (from, to) = (RevKey::lower_bound(lo), RevKey::lower_bound(hi + 1));
        // `count` is the number of events collected before this record.
        for (count, entry) in table.range(from.as_bytes()..to.as_bytes())?.enumerate() {
            let (k, v) = entry?;
            let (rev, tombstone) = RevKey::decode(k.value())?;
            let mut kv = KeyValue::decode(v.value())?;
            let event = if tombstone {
                kv.mod_revision = rev.main;
                Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(kv),
                    prev_kv: None,
                }
            } else {
                Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv),
                    prev_kv: None,
                }
            };
            match out.last_mut() {
                Some((main, events)) if *main == rev.main => events.push(event),
                _ => {
                    if count >= max_events {
                        break;
                    }
                    out.push((rev.main, vec![event]));
                }
            }
        }
        Ok(out)
    }
}
