//! Authentication and authorization, as etcd 3.4 does them: users with bcrypt passwords,
//! roles holding key-range permissions, the `root` user and role, and the auth revision that
//! makes a change take effect on a client's next request.
//!
//! `store` is the pure, replicated core (every change goes through Raft and is applied the
//! same on every member); `perms` merges a user's permissions into ranges; `error` holds
//! etcd's messages and codes.

pub mod checks;
pub mod error;
pub mod jwt;
pub mod perms;
pub mod store;
pub mod tokens;

pub use error::AuthError;
pub use store::{AuthStore, ROOT};
