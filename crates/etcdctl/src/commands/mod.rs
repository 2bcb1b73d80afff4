//! The commands, one module per group, and the table from command path to function.

pub mod auth;
pub mod check;
pub mod completion;
pub mod concurrency;
pub mod endpoint;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod member;
pub mod migrate;
pub mod mirror;
pub mod snapshot;
pub mod watch;

use crate::Cx;

/// Runs the command; returns the exit code (most failures exit directly, as etcdctl does).
pub async fn dispatch(cx: Cx) -> i32 {
    let names = cx.names.clone();
    let path: Vec<&str> = names.to_vec();
    match path.as_slice() {
        ["get"] => kv::get(cx).await,
        ["put"] => kv::put(cx).await,
        ["del"] => kv::del(cx).await,
        ["txn"] => kv::txn(cx).await,
        ["compaction"] => kv::compaction(cx).await,
        ["watch"] => watch::watch(cx).await,
        ["version"] => maintenance::version(),
        ["alarm", "list"] => maintenance::alarm_list(cx).await,
        ["alarm", "disarm"] => maintenance::alarm_disarm(cx).await,
        ["defrag"] => maintenance::defrag(cx).await,
        ["move-leader"] => maintenance::move_leader(cx).await,
        ["endpoint", "health"] => endpoint::health(cx).await,
        ["endpoint", "status"] => endpoint::status(cx).await,
        ["endpoint", "hashkv"] => endpoint::hashkv(cx).await,
        ["lease", "grant"] => lease::grant(cx).await,
        ["lease", "revoke"] => lease::revoke(cx).await,
        ["lease", "timetolive"] => lease::time_to_live(cx).await,
        ["lease", "list"] => lease::list(cx).await,
        ["lease", "keep-alive"] => lease::keep_alive(cx).await,
        ["member", "add"] => member::add(cx).await,
        ["member", "remove"] => member::remove(cx).await,
        ["member", "update"] => member::update(cx).await,
        ["member", "list"] => member::list(cx).await,
        ["member", "promote"] => member::promote(cx).await,
        ["snapshot", "save"] => snapshot::save(cx).await,
        ["snapshot", "status"] => snapshot::status(cx),
        ["snapshot", "restore"] => snapshot::restore(cx),
        ["make-mirror"] => mirror::make_mirror(cx).await,
        ["migrate"] => migrate::migrate(cx).await,
        ["lock"] => concurrency::lock(cx).await,
        ["elect"] => concurrency::elect(cx).await,
        ["auth", "enable"] => auth::enable(cx).await,
        ["auth", "disable"] => auth::disable(cx).await,
        ["user", sub] => {
            let sub = sub.to_string();
            auth::user(cx, &sub).await
        }
        ["role", sub] => {
            let sub = sub.to_string();
            auth::role(cx, &sub).await
        }
        ["completion", shell] => {
            let shell = shell.to_string();
            completion::run(&shell)
        }
        ["check", "perf"] => check::perf(cx).await,
        ["check", "datascale"] => check::datascale(cx).await,
        _ => 0,
    }
}
