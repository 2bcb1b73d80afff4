//! A robustness runner, as etcd's own robustness suite, written for this project: a cluster
//! of real member processes (our `etcd` or `/usr/bin/etcd`), clients driving a mixed workload
//! through the gRPC API while a nemesis kills and pauses members, every request recorded with
//! its real-time bounds, a watch of everything from revision 1, and a checker of the whole
//! history.
//!
//! - [`cluster`]: the member processes, started, killed, paused and restarted;
//! - [`history`]: what was asked, when, and what came back;
//! - [`workload`]: the clients (puts, deletes, reads linearizable and serializable,
//!   compare-and-swap txns), each request with a unique value so every write is traceable;
//! - [`watcher`]: one watch of the key space from revision 1, resumed on another member when
//!   its member dies, and watches from recent past revisions opened on random members;
//! - [`compactor`]: compaction while all this goes on;
//! - [`nemesis`]: the faults; [`netproxy`]: partitions on peer traffic; [`failpoint`]: a
//!   member's failpoints set over HTTP; [`crash`]: crashes at every named point in turn;
//!   [`membership`]: a member removed and replaced by a new one;
//! - [`checker`]: the verdict ([`checker::check`]);
//! - [`run`]: one run end to end, from a seed.

pub mod checker;
pub mod cluster;
pub mod compactor;
pub mod crash;
pub mod failpoint;
pub mod history;
pub mod membership;
pub mod nemesis;
pub mod netproxy;
pub mod run;
pub mod watcher;
pub mod workload;

#[path = "../../../tests/support/ports.rs"]
mod ports;
pub use ports::free_port;
