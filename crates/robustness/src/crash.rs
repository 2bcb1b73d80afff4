//! The crash-point fault: a member crashed (SIGKILL from within) the first time it reaches a
//! named failpoint, then restarted on its data dir. The points are taken in turn from a
//! shuffled cycle of all of them, so a run of N crash faults covers every point N / 17 times.
//!
//! Most points are on the write path and reached within milliseconds. The others need an
//! event, which the fault then causes itself: a membership change (the conf-change points, and
//! a leader streaming a snapshot to the new member), or a new member applying the snapshot it
//! is sent (armed from its first instruction on, through `GOFAIL_FAILPOINTS`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_failpoints::names::{self, CRASH_POINTS};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::cluster::{Cluster, lock};
use crate::netproxy::Network;

/// How long a point may take to be reached before it is disarmed.
const CRASH_WAIT: Duration = Duration::from_secs(2);
/// How long a point reached through a rarer event may take (a membership change, a snapshot,
/// a defragmentation).
const EVENT_WAIT: Duration = Duration::from_secs(15);
/// Once, then off.
const ONCE: &str = "1*return";

/// Every crash point in a random order, again and again.
pub struct CrashCycle {
    order: Vec<&'static str>,
    next: usize,
    /// Times in a row the current point was taken again.
    retries: usize,
}

impl CrashCycle {
    pub fn new(rng: &mut StdRng) -> CrashCycle {
        let mut order = CRASH_POINTS.to_vec();
        order.shuffle(rng);
        CrashCycle {
            order,
            next: 0,
            retries: 0,
        }
    }

    pub fn next_point(&mut self) -> &'static str {
        let point = self.order[self.next % self.order.len()];
        self.next += 1;
        point
    }

    /// Says whether the last point was reached. One that was not is taken again next time (a
    /// snapshot is sent only once the log has been compacted; a defragmentation may not come
    /// in time), up to three times in a row, so one point never holds the others up.
    pub fn settle(&mut self, reached: bool) {
        if reached || self.retries == 3 {
            self.retries = 0;
        } else {
            self.retries += 1;
            self.next = self.next.saturating_sub(1);
        }
    }
}

/// How a point is reached.
enum Trigger {
    /// By the workload, on any member.
    Workload,
    /// By the members that stay while another is replaced (conf changes, snapshot send).
    Replacement,
    /// By the new member of a replacement (applying its first snapshot).
    NewMember,
}

fn trigger(point: &str) -> Trigger {
    match point {
        names::BEFORE_APPLY_CONF_CHANGE
        | names::AFTER_APPLY_CONF_CHANGE
        | names::SNAPSHOT_DURING_SEND => Trigger::Replacement,
        names::RAFT_BEFORE_APPLY_SNAP | names::RAFT_AFTER_APPLY_SNAP => Trigger::NewMember,
        _ => Trigger::Workload,
    }
}

/// What a crash fault did.
pub struct Outcome {
    pub log: String,
    /// Whether a member crashed at the point (or it cannot be reached in this cluster): if
    /// not, the point is tried again next time.
    pub reached: bool,
}

impl Outcome {
    fn failed(log: String) -> Outcome {
        Outcome {
            log,
            reached: false,
        }
    }

    fn of(
        point: &str,
        crashed: &[(usize, Option<Duration>)],
        wait: Duration,
        during: Option<String>,
    ) -> Outcome {
        let mut log = describe(point, crashed, wait);
        if let Some(during) = during {
            log.push_str(&format!(" (during: {during})"));
        }
        Outcome {
            log,
            reached: !crashed.is_empty(),
        }
    }
}

/// Crashes a member at `point` (reached as [`trigger`] says, through `member`), restarting
/// whoever crashed after `down_for`.
pub async fn crash(
    cluster: &Mutex<Cluster>,
    network: Option<&Network>,
    point: &'static str,
    member: usize,
    down_for: Duration,
    rng: &mut StdRng,
) -> Outcome {
    let size = lock(cluster).members.len();
    match trigger(point) {
        Trigger::Workload => {
            // A defragmentation runs on one member now and then: every member is armed, and
            // the one defragmented crashes.
            let armed: Vec<usize> = match point {
                names::DEFRAG_BEFORE_COPY | names::DEFRAG_AFTER_COPY => (0..size).collect(),
                _ => vec![member],
            };
            if let Err(e) = arm(cluster, &armed, point).await {
                return Outcome::failed(e);
            }
            // Defragmentations come every few seconds; everything else within milliseconds.
            let wait = if armed.len() > 1 {
                EVENT_WAIT
            } else {
                CRASH_WAIT
            };
            let mut crashed = restart_crashed(cluster, &armed, down_for, wait).await;
            disarm(cluster, &armed, point).await;
            crashed.extend(restart_late_crashes(cluster, &armed, &crashed, down_for).await);
            Outcome::of(point, &crashed, wait, None)
        }
        // Never reachable here: counted as done, so the cycle goes on.
        _ if size < 2 => Outcome {
            log: format!("{point} needs a membership change: not with one member"),
            reached: true,
        },
        Trigger::Replacement => {
            // Of the members that stay, the leader sends the new member its snapshot (all are
            // armed, only it crashes), and each applies the removal and the addition (one is
            // armed: crashing all of them there would leave no quorum to finish the change).
            let victim = member;
            let others: Vec<usize> = (0..size).filter(|i| *i != victim).collect();
            let armed = if point == names::SNAPSHOT_DURING_SEND {
                others
            } else {
                vec![others[rng.random_range(0..others.len())]]
            };
            if let Err(e) = arm(cluster, &armed, point).await {
                return Outcome::failed(e);
            }
            let (replaced, mut crashed) = tokio::join!(
                crate::membership::replace(cluster, network, victim, None),
                restart_crashed(cluster, &armed, down_for, EVENT_WAIT),
            );
            disarm(cluster, &armed, point).await;
            crashed.extend(restart_late_crashes(cluster, &armed, &crashed, down_for).await);
            Outcome::of(point, &crashed, EVENT_WAIT, Some(replaced))
        }
        Trigger::NewMember => {
            // Watched only once the new member runs: the old one exits by itself when it is
            // removed, which is not the crash asked for.
            let victim = member;
            let failpoints = format!("{point}={ONCE}");
            let replaced =
                crate::membership::replace(cluster, network, victim, Some(&failpoints)).await;
            let crashed = restart_crashed(cluster, &[victim], down_for, EVENT_WAIT).await;
            Outcome::of(point, &crashed, EVENT_WAIT, Some(replaced))
        }
    }
}

/// Arms `point` once on each of `members`. A member just restarted may not serve its
/// failpoint control yet: it is given a second to.
async fn arm(cluster: &Mutex<Cluster>, members: &[usize], point: &str) -> Result<(), String> {
    for &m in members {
        let Some(addr) = lock(cluster).members[m].failpoint_addr.clone() else {
            return Err(format!("m{m} has no failpoints"));
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match crate::failpoint::set(&addr, point, ONCE).await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(())
}

async fn disarm(cluster: &Mutex<Cluster>, members: &[usize], point: &str) {
    for &m in members {
        let addr = lock(cluster).members[m].failpoint_addr.clone();
        if let Some(addr) = addr {
            // A member that crashed or is restarting has nothing to disarm.
            let _ = crate::failpoint::clear(&addr, point).await;
        }
    }
}

/// Watches `members` for `wait`: each one whose process ends is restarted after `down_for`.
/// Returns those that crashed, with how long after the start.
async fn restart_crashed(
    cluster: &Mutex<Cluster>,
    members: &[usize],
    down_for: Duration,
    wait: Duration,
) -> Vec<(usize, Option<Duration>)> {
    let started = Instant::now();
    let mut crashed = Vec::new();
    // One crash is what was asked for: with several armed, the first to crash ends the wait.
    while started.elapsed() < wait && crashed.is_empty() {
        for &m in members {
            let after = started.elapsed();
            if restart_if_crashed(cluster, m, down_for).await {
                crashed.push((m, Some(after)));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crashed
}

/// Restarts each of `armed` not in `crashed` whose process has ended since: a second member
/// that reached the point before it was disarmed (the next leader sending the same snapshot,
/// say). Left down, it would cost the cluster its quorum for the rest of the run.
async fn restart_late_crashes(
    cluster: &Mutex<Cluster>,
    armed: &[usize],
    crashed: &[(usize, Option<Duration>)],
    down_for: Duration,
) -> Vec<(usize, Option<Duration>)> {
    let mut late = Vec::new();
    for &m in armed {
        if !crashed.iter().any(|(c, _)| *c == m) && restart_if_crashed(cluster, m, down_for).await {
            late.push((m, None));
        }
    }
    late
}

/// If the member's process has ended, restarts it after `down_for`; says whether it had.
async fn restart_if_crashed(cluster: &Mutex<Cluster>, m: usize, down_for: Duration) -> bool {
    if !lock(cluster).crashed(m) {
        return false;
    }
    tokio::time::sleep(down_for).await;
    let _ = lock(cluster).restart(m);
    true
}

fn describe(point: &str, crashed: &[(usize, Option<Duration>)], wait: Duration) -> String {
    if crashed.is_empty() {
        return format!("no member reached {point} within {wait:?}");
    }
    crashed
        .iter()
        .map(|(m, after)| match after {
            Some(after) => format!("m{m} crashed at {point} after {after:?}, restarted"),
            None => format!("m{m} also crashed at {point} before it was disarmed, restarted"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
