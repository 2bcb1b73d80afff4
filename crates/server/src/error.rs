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
    #[error("the member has been permanently removed from the cluster")]
    Removed,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// The CORRUPT alarm is active: writes are refused until an operator disarms it.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// `--experimental-initial-corrupt-check` found a peer whose HashKV differs from ours at
    /// the same revision and compaction: the member does not start (etcd's wording).
    #[error("{0:x} found data inconsistency with peers")]
    DataInconsistency(u64),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("{0}")]
    Mvcc(#[from] MvccError),
    #[error("{0}")]
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
            ServerError::Timeout
            | ServerError::NoLeader
            | ServerError::Stopped
            | ServerError::Removed
            | ServerError::Unhealthy
            | ServerError::NotSupportedForLearner => Code::Unavailable,
            ServerError::MemberExists
            | ServerError::PeerUrlExists
            | ServerError::NotEnoughStartedMembers
            | ServerError::MemberNotLearner
            | ServerError::LearnerNotReady
            | ServerError::TooManyLearners
            | ServerError::NotLeader
            | ServerError::BadLeaderTransferee => Code::FailedPrecondition,
            ServerError::MemberBadUrls => Code::InvalidArgument,
            ServerError::LeaseNotFound | ServerError::MemberNotFound => Code::NotFound,
            ServerError::LeaseExists => Code::FailedPrecondition,
            ServerError::LeaseTtlTooLarge => Code::OutOfRange,
            ServerError::Corrupt => Code::DataLoss,
            ServerError::DataInconsistency(_) => Code::DataLoss,
            ServerError::Auth(e) => e.code(),
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
