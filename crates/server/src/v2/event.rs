//! What v2 requests and watches answer: events (`{"action":"set","node":{...},"prevNode":
//! {...}}`), the nodes they carry, and the history of the last 1000 events that watches
//! with a `waitIndex` in the past are served from.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::{V2Error, code};
use super::json::JsonWriter;

/// How many events the history keeps (etcd's 1000).
pub const HISTORY_CAPACITY: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Get,
    Create,
    Set,
    Update,
    Delete,
    CompareAndSwap,
    CompareAndDelete,
    Expire,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::Create => "create",
            Action::Set => "set",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::CompareAndSwap => "compareAndSwap",
            Action::CompareAndDelete => "compareAndDelete",
            Action::Expire => "expire",
        }
    }
}

/// A node as answers show it (etcd's `NodeExtern`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub key: String,
    /// `None` for directories.
    pub value: Option<String>,
    pub dir: bool,
    /// Unix nanoseconds when it expires; `None` when it never does.
    pub expiration: Option<i64>,
    /// Seconds left when the answer was made (rounded up), 0 when permanent.
    pub ttl: i64,
    /// A directory's children, when listed.
    pub nodes: Vec<NodeView>,
    pub modified_index: u64,
    pub created_index: u64,
}

impl NodeView {
    pub fn new(key: &str, modified_index: u64, created_index: u64) -> NodeView {
        NodeView {
            key: key.to_string(),
            modified_index,
            created_index,
            ..NodeView::default()
        }
    }

    /// etcd's JSON field order and omissions (`omitempty` on every field but none of
    /// `value`'s contents: an empty value is still written).
    fn write(&self, w: &mut JsonWriter, trim_prefix: &str) {
        let key = self.key.strip_prefix(trim_prefix).unwrap_or(&self.key);
        if !key.is_empty() {
            w.field_str("key", key);
        }
        if let Some(value) = &self.value {
            w.field_str("value", value);
        }
        if self.dir {
            w.field_bool("dir", true);
        }
        if let Some(expiration) = self.expiration {
            w.field_raw("expiration", &format!("\"{}\"", rfc3339_nano(expiration)));
        }
        if self.ttl != 0 {
            w.field_i64("ttl", self.ttl);
        }
        if !self.nodes.is_empty() {
            w.begin_array_field("nodes");
            for node in &self.nodes {
                w.begin_object();
                node.write(w, trim_prefix);
                w.end_object();
            }
            w.end_array();
        }
        if self.modified_index != 0 {
            w.field_u64("modifiedIndex", self.modified_index);
        }
        if self.created_index != 0 {
            w.field_u64("createdIndex", self.created_index);
        }
    }
}

/// One change (or a get's answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub action: Action,
    pub node: NodeView,
    pub prev_node: Option<NodeView>,
    /// The store index when the answer was made (`X-Etcd-Index`); not in the body.
    pub etcd_index: u64,
    /// A TTL refresh: kept in the history, never sent to watchers.
    pub refresh: bool,
}

impl Event {
    pub fn new(action: Action, key: &str, modified_index: u64, created_index: u64) -> Event {
        Event {
            action,
            node: NodeView::new(key, modified_index, created_index),
            prev_node: None,
            etcd_index: 0,
            refresh: false,
        }
    }

    /// The index of the change: its node's modified index.
    pub fn index(&self) -> u64 {
        self.node.modified_index
    }

    /// Whether the answer is `201 Created`.
    pub fn is_created(&self) -> bool {
        self.action == Action::Create || (self.action == Action::Set && self.prev_node.is_none())
    }

    /// The body line: keys shown without the store's namespace `trim_prefix`; with
    /// `with_nodes` false (`noValueOnSuccess`) only the action.
    pub fn to_json(&self, trim_prefix: &str, with_nodes: bool) -> String {
        let mut w = JsonWriter::default();
        w.begin_object();
        w.field_str("action", self.action.as_str());
        if with_nodes {
            w.begin_object_field("node");
            self.node.write(&mut w, trim_prefix);
            w.end_object();
            if let Some(prev) = &self.prev_node {
                w.begin_object_field("prevNode");
                prev.write(&mut w, trim_prefix);
                w.end_object();
            }
        }
        // `refresh` is never shown: etcd copies the event before answering, and its copy
        // drops the flag.
        w.end_object();
        w.finish_line()
    }
}

/// The last events in index order, for watches that start in the past.
#[derive(Debug, Default)]
pub struct History {
    events: VecDeque<Arc<Event>>,
}

impl History {
    pub fn add(&mut self, event: Arc<Event>) {
        if self.events.len() == HISTORY_CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn events(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.events.iter()
    }

    /// The index of the oldest event kept; events before it are gone.
    pub fn start_index(&self) -> u64 {
        self.events.front().map_or(0, |e| e.index())
    }

    /// The events at or after `index` that a watcher of `key` would see (empty if none
    /// happened yet); an error when `index` is older than the history.
    pub fn scan(&self, key: &str, recursive: bool, index: u64) -> Result<Vec<Arc<Event>>, V2Error> {
        let start = self.start_index();
        if index < start {
            return Err(V2Error::new(
                code::EVENT_INDEX_CLEARED,
                format!("the requested history has been cleared [{start}/{index}]"),
                0,
            ));
        }
        let from = self.events.partition_point(|e| e.index() < index);
        let dir_prefix = {
            let mut k = super::path::clean(key);
            if !k.ends_with('/') {
                k.push('/');
            }
            k
        };
        let seen_by = |event: &Event| {
            if event.refresh {
                return false;
            }
            let mut hit = event.node.key == key;
            if recursive {
                hit |= event.node.key.starts_with(&dir_prefix);
            }
            // A deleted or expired directory ends the watch of anything under it (a plain
            // prefix test, as etcd's).
            if matches!(event.action, Action::Delete | Action::Expire)
                && let Some(prev) = &event.prev_node
                && prev.dir
            {
                hit |= key.starts_with(&prev.key);
            }
            hit
        };
        Ok(self
            .events
            .range(from..)
            .filter(|e| seen_by(e))
            .cloned()
            .collect())
    }
}

/// Go's `time.RFC3339Nano` in UTC: `2006-01-02T15:04:05.999999999Z`, trailing zeros of the
/// fraction dropped.
pub fn rfc3339_nano(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_go_formats_them() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_500_000_000_120_000_000),
            "2017-07-14T02:40:00.12Z"
        );
        assert_eq!(
            rfc3339_nano(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn event_json_in_etcds_field_order() {
        let mut e = Event::new(Action::Set, "/1/foo", 5, 5);
        e.node.value = Some("bar".into());
        e.prev_node = Some(NodeView {
            value: Some(String::new()),
            ..NodeView::new("/1/foo", 4, 3)
        });
        assert_eq!(
            e.to_json("/1", true),
            "{\"action\":\"set\",\"node\":{\"key\":\"/foo\",\"value\":\"bar\",\"modifiedIndex\":5,\
             \"createdIndex\":5},\"prevNode\":{\"key\":\"/foo\",\"value\":\"\",\
             \"modifiedIndex\":4,\"createdIndex\":3}}\n"
        );
        assert_eq!(e.to_json("/1", false), "{\"action\":\"set\"}\n");
    }

    fn event(index: u64, key: &str) -> Arc<Event> {
        Arc::new(Event::new(Action::Set, key, index, index))
    }

    #[test]
    fn history_keeps_the_last_thousand_and_scans_by_key() {
        let mut h = History::default();
        for i in 1..=1005 {
            h.add(event(i, if i % 2 == 0 { "/1/a/b" } else { "/1/c" }));
        }
        assert_eq!(h.start_index(), 6);
        let err = h.scan("/1/c", false, 5).unwrap_err();
        assert_eq!(err.code, code::EVENT_INDEX_CLEARED);
        assert_eq!(err.cause, "the requested history has been cleared [6/5]");
        assert_eq!(h.scan("/1/c", false, 6).unwrap()[0].index(), 7);
        assert_eq!(h.scan("/1/c", false, 6).unwrap().len(), 500);
        assert_eq!(h.scan("/1/a", true, 6).unwrap()[0].index(), 6);
        assert!(h.scan("/1/a", false, 6).unwrap().is_empty());
        assert!(h.scan("/1/c", false, 1006).unwrap().is_empty());
    }
}
