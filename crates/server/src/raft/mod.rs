//! The Raft loop: the one thread that owns the raft-rs state machine, the WAL and the apply
//! path. Proposals and read-index requests come in through one bounded channel, peer messages
//! through the peer links the thread polls itself (`links`); each Raft `Ready` is persisted to
//! the WAL with one fdatasync, its messages written to the links, and its committed entries
//! applied to the store in one backend transaction.

mod bootstrap;
pub mod confchange;
pub(crate) mod guard;
pub mod links;
mod logger;
pub(crate) mod node;

pub use bootstrap::{
    Bootstrapped, OpenedWal, RemoteCluster, bootstrap, decode_cluster_state, encode_cluster_state,
    open_wal,
};
pub use links::{Links, PeerLink, RaftInbox};
pub use node::{MessageSender, NoPeers, RaftInput, RaftLoop, RaftLoopParts, RaftStatus};
