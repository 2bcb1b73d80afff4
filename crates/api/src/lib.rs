//! The wire API: etcd's v3 protobuf messages and gRPC services, plus our internal formats.
//!
//! Generated from `proto/` at build time. Nothing but types lives here: no behaviour, no I/O.
//! etcd's public messages also implement serde in the protobuf JSON mapping (pbjson), with
//! proto field names, for the JSON gateway.

#![allow(clippy::all, missing_docs)]

pub mod codec;

/// Key-value records and watch events (`mvccpb`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Users, roles and permissions (`authpb`).
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// The client API services: KV, Watch, Lease, Cluster, Maintenance, Auth (`etcdserverpb`).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// The lock service (`v3lockpb`).
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// The election service (`v3electionpb`).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// etcd's lease record as its backend stores it (`leasepb`), for backups in etcd's format.
pub mod leasepb {
    tonic::include_proto!("leasepb");
}

/// etcd 3.5's membership log entries (`membershippb`), read from etcd's WAL.
pub mod membershippb {
    tonic::include_proto!("membershippb");
    include!(concat!(env!("OUT_DIR"), "/membershippb.serde.rs"));
}

/// etcd's on-disk records: raftpb entries, hard state and snapshots, walpb records, snappb
/// files (`etcdfiles`, ours: etcd spreads them over three packages).
pub mod etcdfiles {
    tonic::include_proto!("etcdfiles");
}

/// Raft proposals and member-to-member traffic; ours, not etcd's.
pub mod internalpb {
    tonic::include_proto!("internalpb");
}

/// Names of our records in the backend's metadata (`ext`) table that more than one crate
/// reads: the server writes them, the offline tools (`etcdutl`) read them.
pub mod records {
    /// A v2 store node (`internalpb::V2Node`) is kept under this prefix and its path
    /// (`v2/node/1/foo`).
    pub const V2_NODE_PREFIX: &str = "v2/node";
    /// The v2 store index, 8 bytes big-endian.
    pub const V2_INDEX: &str = "v2/index";
    /// A v2 history event (JSON) under this prefix and its index in 20 digits.
    pub const V2_EVENT_PREFIX: &str = "v2/event/";
}
