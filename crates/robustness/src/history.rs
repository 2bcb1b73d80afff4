//! The record of a run: every client request with when it was sent and when its answer came
//! (microseconds since the run started), and every watch response.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Put {
        key: String,
        value: String,
        /// Attached to this lease (0: none).
        #[serde(default)]
        lease: i64,
    },
    Delete {
        key: String,
    },
    Get {
        key: String,
        linearizable: bool,
        /// Sent as a txn holding only this range (served as a read, like the range itself).
        #[serde(default)]
        via_txn: bool,
    },
    /// Put `value` if the key's value is `expect` (`None`: the key does not exist).
    CompareAndSwap {
        key: String,
        expect: Option<String>,
        value: String,
    },
    /// A lease with a TTL longer than any run: it ends only when revoked.
    LeaseGrant,
    /// Revoking deletes every key attached to the lease, at one revision.
    LeaseRevoke {
        lease: i64,
    },
    /// One keep-alive on a stream of its own: the lease's TTL is reset, or 0 if it is gone.
    LeaseKeepAlive {
        lease: i64,
    },
}

impl Request {
    /// The key the request is about; empty for lease requests.
    pub fn key(&self) -> &str {
        match self {
            Request::Put { key, .. }
            | Request::Delete { key }
            | Request::Get { key, .. }
            | Request::CompareAndSwap { key, .. } => key,
            Request::LeaseGrant | Request::LeaseRevoke { .. } | Request::LeaseKeepAlive { .. } => {
                ""
            }
        }
    }

    /// The value this request writes, if it writes one (values are unique in a run).
    pub fn written_value(&self) -> Option<&str> {
        match self {
            Request::Put { value, .. } | Request::CompareAndSwap { value, .. } => Some(value),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Put {
        revision: i64,
    },
    Delete {
        revision: i64,
        deleted: i64,
    },
    /// `value` with its mod revision, or nothing.
    Get {
        revision: i64,
        value: Option<(String, i64)>,
    },
    CompareAndSwap {
        revision: i64,
        succeeded: bool,
    },
    LeaseGrant {
        id: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
    /// The TTL the lease was renewed to; 0 if the member found no such lease.
    LeaseKeepAlive {
        ttl: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok(Response),
    /// The member said no: the request had no effect.
    Failed(String),
    /// No answer (timeout, connection lost): a write may or may not have been applied.
    Unknown(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: usize,
    pub invoked_us: u64,
    pub returned_us: u64,
    pub request: Request,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: i64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
    /// The key's value before, as the member reported it (the watch asks for prev_kv).
    pub prev_value: Option<String>,
}

/// One watch response: its events arrived together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    pub header_revision: i64,
    pub events: Vec<Event>,
}

/// A watch opened mid-run from a past revision, on some member, read for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSegment {
    pub start_revision: i64,
    pub member: usize,
    pub responses: Vec<WatchResponse>,
    /// The member cancelled the watch as compacted, at this revision.
    pub compacted: Option<i64>,
    /// Whether the watch asked for previous values (histories saved before it was recorded
    /// all did).
    #[serde(default = "asked_prev_kv")]
    pub prev_kv: bool,
}

fn asked_prev_kv() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub operations: Vec<Operation>,
    pub watch: Vec<WatchResponse>,
    /// Watches from past revisions, each to be a slice of `watch`.
    #[serde(default)]
    pub segments: Vec<WatchSegment>,
    /// Revisions compacted at during the run.
    #[serde(default)]
    pub compactions: Vec<i64>,
    /// Progress notifications the main watch asked for and got: (how many responses with
    /// events it had received before, the notification's revision).
    #[serde(default)]
    pub progress: Vec<(usize, i64)>,
    /// A linearizable read of every key at the end, at `final_revision`.
    pub final_state: Vec<(String, String, i64)>,
    pub final_revision: i64,
}
