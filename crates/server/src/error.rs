//! The server's errors, and their one conversion to etcd's gRPC status codes and messages.
//!
//! Clients match on etcd's exact strings (clientv3's rpctypes turns them back into typed
//! errors), so every message here is etcd's where etcd has one.

use etcd_mvcc::MvccError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member ID is not found")]
    MemberNotFound,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("{0}")]
    Mvcc(#[from] MvccError),
    #[error("wal: {0}")]
    Wal(#[from] etcd_wal::WalError),
    #[error("{0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("{0}")]
    Internal(String),
}

impl ServerError {
    /// The gRPC code etcd uses for this error (see etcd's `api/v3rpc/rpctypes`).
    pub fn code(&self) -> Code {
        match self {
            ServerError::EmptyKey
            | ServerError::TooManyOps
            | ServerError::DuplicateKey
            | ServerError::RequestTooLarge
            | ServerError::InvalidSortOption => Code::InvalidArgument,
            ServerError::TooManyRequests | ServerError::NoSpace => Code::ResourceExhausted,
            ServerError::Timeout | ServerError::NoLeader | ServerError::Stopped => {
                Code::Unavailable
            }
            ServerError::LeaseNotFound | ServerError::MemberNotFound => Code::NotFound,
            ServerError::LeaseExists => Code::FailedPrecondition,
            ServerError::LeaseTtlTooLarge => Code::OutOfRange,
            ServerError::Mvcc(e) => mvcc_code(e),
            ServerError::Wal(_)
            | ServerError::Config(_)
            | ServerError::Raft(_)
            | ServerError::Internal(_) => Code::Internal,
        }
    }
}

fn mvcc_code(e: &MvccError) -> Code {
    match e {
        MvccError::Compacted | MvccError::FutureRev => Code::OutOfRange,
        MvccError::KeyNotFound => Code::InvalidArgument,
        MvccError::LeaseNotFound => Code::NotFound,
        _ => Code::Internal,
    }
}

impl From<crate::lease::LeaseError> for ServerError {
    fn from(e: crate::lease::LeaseError) -> ServerError {
        match e {
            crate::lease::LeaseError::NotFound => ServerError::LeaseNotFound,
            crate::lease::LeaseError::Exists => ServerError::LeaseExists,
            crate::lease::LeaseError::TtlTooLarge => ServerError::LeaseTtlTooLarge,
        }
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}
