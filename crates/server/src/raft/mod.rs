//! The Raft loop: the one thread that owns the raft-rs state machine, the WAL and the apply
//! path. Proposals, read-index requests and peer messages come in through one bounded channel;
//! each Raft `Ready` is persisted to the WAL with one fdatasync, its messages handed to the peer
//! transport, and its committed entries applied to the store in one backend transaction.

mod bootstrap;
pub mod confchange;
mod logger;
pub(crate) mod node;

pub use bootstrap::{Bootstrapped, RemoteCluster, bootstrap};
pub use node::{MessageSender, NoPeers, RaftInput, RaftLoop, RaftLoopParts, RaftStatus};
