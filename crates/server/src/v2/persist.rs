//! The v2 store in the backend: one record per node under its path, the store index, and the
//! event history, written in the same transaction as the entry that changed them, so the v2
//! store survives restarts and travels with Raft snapshots like the rest of the backend.

use etcd_api::internalpb::V2Node;
use etcd_mvcc::ApplyBatch;
use prost::Message;

use super::event::{Event, HISTORY_CAPACITY};
use super::store::{Kind, Node, Store};

use etcd_api::records::{
    V2_EVENT_PREFIX as EVENT_PREFIX, V2_INDEX as INDEX_KEY, V2_NODE_PREFIX as NODE_PREFIX,
};

fn event_key(index: u64) -> String {
    format!("{EVENT_PREFIX}{index:020}")
}

/// Writes what changed in `store` since the last save into the batch.
pub fn save_changes(batch: &mut ApplyBatch<'_>, store: &mut Store) {
    let changes = store.take_changes();
    if changes.paths.is_empty() && changes.events.is_empty() {
        return;
    }
    for path in &changes.paths {
        let key = format!("{NODE_PREFIX}{path}");
        match store.node(path) {
            Some(node) => batch.meta_put(&key, &encode_node(node)),
            None => batch.meta_delete(&key),
        }
    }
    for event in &changes.events {
        let index = event.index();
        // serde_json cannot fail on these plain types.
        if let Ok(json) = serde_json::to_vec(&**event) {
            batch.meta_put(&event_key(index), &json);
        }
        if let Some(gone) = index.checked_sub(HISTORY_CAPACITY as u64) {
            batch.meta_delete(&event_key(gone));
        }
    }
    batch.meta_put(INDEX_KEY, &store.index().to_be_bytes());
}

fn encode_node(node: &Node) -> Vec<u8> {
    let (dir, value) = match &node.kind {
        Kind::Dir(_) => (true, String::new()),
        Kind::File(v) => (false, v.clone()),
    };
    V2Node {
        dir,
        value,
        created_index: node.created_index,
        modified_index: node.modified_index,
        expire_unix_nanos: node.expire.unwrap_or(0),
    }
    .encode_to_vec()
}

/// The v2 store as the backend holds it (an empty one in a backend that never had any).
pub fn load(backend: &etcd_mvcc::Store) -> Result<Store, String> {
    let io = |e: etcd_mvcc::MvccError| format!("cannot read the v2 store from the backend: {e}");
    let index = match backend.meta_get(INDEX_KEY).map_err(io)? {
        None => return Ok(Store::new()),
        Some(bytes) => u64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| "the v2 store index record is damaged".to_string())?,
        ),
    };
    let mut nodes = Vec::new();
    for (key, bytes) in backend.meta_range(NODE_PREFIX).map_err(io)? {
        let path = key[NODE_PREFIX.len()..].to_string();
        let record = V2Node::decode(bytes.as_slice())
            .map_err(|e| format!("the v2 store record of {path:?} is damaged: {e}"))?;
        nodes.push(Node {
            path,
            created_index: record.created_index,
            modified_index: record.modified_index,
            expire: (record.expire_unix_nanos != 0).then_some(record.expire_unix_nanos),
            kind: if record.dir {
                Kind::Dir(Default::default())
            } else {
                Kind::File(record.value)
            },
        });
    }
    let mut events = Vec::new();
    for (key, bytes) in backend.meta_range(EVENT_PREFIX).map_err(io)? {
        let event: Event = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the v2 history record {key:?} is damaged: {e}"))?;
        events.push(event);
    }
    Store::restore(index, nodes, events)
}
