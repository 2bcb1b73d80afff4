//! The etcd server library: everything between a parsed configuration and a serving member.
//!
//! A write travels: gRPC handler ([`grpc`]) -> [`server::EtcdServer::propose`] -> the Raft loop
//! ([`raft`]) -> WAL fsync -> commit -> [`apply`] to the MVCC store -> the waiting handler.
//! See ARCHITECTURE.md at the repository root for the map.

pub mod apply;
pub mod auth;
mod backup;
pub mod config;
mod corruption;
pub mod error;
pub mod etcd_data;
mod failpoint_http;
mod gateway;
mod grpc;
mod http;
pub mod lease;
pub mod membership;
pub mod metrics;
mod peer;
pub mod peer_stats;
mod probes;
pub mod raft;
pub mod read_budget;
mod refusal;
mod serve;
pub mod server;
pub mod snapshot;
mod start;
mod tls;
pub mod v2;
mod v2http;
mod wait;
mod watch;

pub use config::{ServerConfig, TlsSettings};
pub use error::ServerError;
/// The JSON gateway over any in-process gRPC router of the v3 services (the grpc-proxy serves
/// it over its own with `--enable-ui`).
pub use gateway::router as json_gateway;
pub use server::EtcdServer;
pub use start::{RunningServer, start};
