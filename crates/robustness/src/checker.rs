//! The verdict on a [`History`].
//!
//! etcd orders every write by its revision; a read at revision `R` sees the key space as the
//! writes up to `R` left it. So a history is linearizable exactly when every operation can be
//! given a position (a write: its revision; a read: just after the revision it read at) such
//! that (1) each answer is what the key space held at that position, and (2) an operation
//! that returned before another was sent has an earlier position. Positions come from the
//! answers, and for writes whose outcome the client never learnt, from the watch; (2) is then
//! checked for every pair at once with a sweep in real time. This is stricter than a search
//! over orders: the member's own revisions must be right, not just some order.
//!
//! The watch, a single stream from revision 1 resumed across member failures, is the log the
//! positions come from, so it is checked first: revisions in order, each revision's events in
//! one response, no event twice, no revision missing up to the end, each event's previous
//! value the one before it. Then every write is accounted for: an acknowledged write is in
//! the log at its revision, a write refused is not in it at all, a value is written at most
//! once, and the log holds nothing no client asked for. Finally the state at the end equals
//! the log replayed.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{Event, History, Operation, Outcome, Request, Response};

/// At most this many violations of one kind are described.
const DETAILS_PER_KIND: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Violations found beyond the ones described, per kind.
    pub more: BTreeMap<&'static str, usize>,
    pub operations: usize,
    pub acknowledged_writes: usize,
    pub unknown_writes_applied: usize,
    pub linearizable_reads: usize,
    pub keep_alives: usize,
    pub events: usize,
    pub progress_notifications: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn flag(&mut self, kind: &'static str, detail: String) {
        let described = self.violations.iter().filter(|v| v.kind == kind).count();
        if described < DETAILS_PER_KIND {
            self.violations.push(Violation { kind, detail });
        } else {
            *self.more.entry(kind).or_default() += 1;
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} operations ({} acknowledged writes, {} writes of unknown outcome applied, {} \
             linearizable reads, {} lease keep-alives), {} watch events, {} progress \
             notifications: {}",
            self.operations,
            self.acknowledged_writes,
            self.unknown_writes_applied,
            self.linearizable_reads,
            self.keep_alives,
            self.events,
            self.progress_notifications,
            if self.ok() {
                "no violation"
            } else {
                "VIOLATIONS"
            }
        )?;
        for v in &self.violations {
            writeln!(f, "  {}: {}", v.kind, v.detail)?;
        }
        for (kind, n) in &self.more {
            writeln!(f, "  {kind}: {n} more")?;
        }
        Ok(())
    }
}

/// Each key's versions in revision order: (revision, value; `None` once deleted).
#[derive(Default)]
struct Timeline {
    versions: HashMap<String, Vec<(i64, Option<String>)>>,
}

impl Timeline {
    /// The key's value and mod revision at `revision`.
    fn at(&self, key: &str, revision: i64) -> Option<(String, i64)> {
        let versions = self.versions.get(key)?;
        let i = versions.partition_point(|(r, _)| *r <= revision);
        let (mod_revision, value) = versions.get(i.checked_sub(1)?)?;
        value.clone().map(|v| (v, *mod_revision))
    }
}

/// An operation placed in the order: `position` is 2 × revision for a write, 2 × revision + 1
/// for a read at that revision.
struct Placed<'a> {
    op: &'a Operation,
    position: i64,
    /// `false` for a write of unknown outcome: when it took effect is not known, only that it
    /// was after it was sent.
    returned: bool,
}

pub fn check(history: &History) -> Report {
    let mut report = Report {
        operations: history.operations.len(),
        ..Report::default()
    };
    let events = check_watch(history, &mut report);
    report.events = events.len();
    check_progress(history, &mut report);
    report.progress_notifications = history.progress.len();
    check_segments(history, &events, &mut report);

    // The log replayed.
    let mut timeline = Timeline::default();
    let mut by_value: HashMap<&str, &Event> = HashMap::new();
    let mut deletes: HashMap<(i64, &str), &Event> = HashMap::new();
    for event in &events {
        let versions = timeline.versions.entry(event.key.clone()).or_default();
        let before = versions.last().and_then(|(_, v)| v.clone());
        if before != event.prev_value {
            report.flag(
                "watch prev_kv wrong",
                format!(
                    "{} at revision {}: previous value {:?}, the log says {:?}",
                    event.key, event.revision, event.prev_value, before
                ),
            );
        }
        if event.value.is_none() && before.is_none() {
            report.flag(
                "delete of a missing key",
                format!("{} at revision {}", event.key, event.revision),
            );
        }
        versions.push((event.revision, event.value.clone()));
        match &event.value {
            Some(value) => {
                if by_value.insert(value.as_str(), event).is_some() {
                    report.flag(
                        "write applied twice",
                        format!("{value:?} again at revision {}", event.revision),
                    );
                }
            }
            None => {
                deletes.insert((event.revision, event.key.as_str()), event);
            }
        }
    }

    // Which lease each written value was attached to, and which leases were (maybe) revoked.
    let mut lease_of_value: HashMap<&str, i64> = HashMap::new();
    let mut revoked: HashSet<i64> = HashSet::new();
    // When a revocation of each lease was first asked for, whatever came of it.
    let mut first_revoke_sent: HashMap<i64, u64> = HashMap::new();
    // Deletions acknowledged to a delete request, which no revocation can claim.
    let mut deleted_by_request: HashSet<(i64, &str)> = HashSet::new();
    for op in &history.operations {
        match (&op.request, &op.outcome) {
            (Request::Delete { key }, Outcome::Ok(Response::Delete { revision, deleted }))
                if *deleted > 0 =>
            {
                deleted_by_request.insert((*revision, key.as_str()));
            }
            (Request::Put { value, lease, .. }, _) if *lease != 0 => {
                lease_of_value.insert(value.as_str(), *lease);
            }
            (Request::LeaseRevoke { lease }, outcome) => {
                if !matches!(outcome, Outcome::Failed(_)) {
                    revoked.insert(*lease);
                }
                let sent = first_revoke_sent.entry(*lease).or_insert(op.invoked_us);
                *sent = (*sent).min(op.invoked_us);
            }
            _ => {}
        }
    }
    // A delete event that a lease revocation explains: the value it removed was attached to
    // a lease a client revoked.
    let by_revocation = |event: &Event, timeline: &Timeline| {
        timeline
            .at(&event.key, event.revision - 1)
            .and_then(|(v, _)| lease_of_value.get(v.as_str()))
            .is_some_and(|lease| revoked.contains(lease))
    };

    let mut placed: Vec<Placed> = Vec::new();
    let mut claimed_values: HashSet<&str> = HashSet::new();
    let mut claimed_deletes: HashSet<(i64, &str)> = HashSet::new();
    let mut unknown_deletes: HashMap<&str, usize> = HashMap::new();
    for op in &history.operations {
        let key = op.request.key();
        if let Some(value) = op.request.written_value() {
            claimed_values.insert(value);
        }
        let logged = op
            .request
            .written_value()
            .and_then(|v| by_value.get(v).copied());
        match (&op.request, &op.outcome) {
            (_, Outcome::Failed(why)) => {
                if let Some(event) = logged {
                    report.flag(
                        "refused write applied",
                        format!(
                            "client {} was told {why:?} but {:?} is at revision {}",
                            op.client,
                            op.request.written_value(),
                            event.revision
                        ),
                    );
                }
            }
            (Request::Delete { .. }, Outcome::Unknown(_)) => {
                *unknown_deletes.entry(key).or_default() += 1;
            }
            (Request::Get { .. } | Request::LeaseKeepAlive { .. }, Outcome::Unknown(_)) => {}
            (_, Outcome::Unknown(_)) => {
                if let Some(event) = logged {
                    report.unknown_writes_applied += 1;
                    check_write_event(op, event, key, &mut report);
                    placed.push(Placed {
                        op,
                        position: 2 * event.revision,
                        returned: false,
                    });
                }
            }
            (Request::Put { value, .. }, Outcome::Ok(Response::Put { revision })) => {
                report.acknowledged_writes += 1;
                match logged {
                    Some(event) if event.revision == *revision => {
                        check_write_event(op, event, key, &mut report)
                    }
                    Some(event) => report.flag(
                        "wrong revision",
                        format!(
                            "put of {value:?} answered revision {revision}, the log has it at {}",
                            event.revision
                        ),
                    ),
                    None => report.flag(
                        "acknowledged write lost",
                        format!("put {key}={value:?} at revision {revision} is not in the log"),
                    ),
                }
                placed.push(Placed {
                    op,
                    position: 2 * revision,
                    returned: true,
                });
            }
            (
                Request::CompareAndSwap { expect, value, .. },
                Outcome::Ok(Response::CompareAndSwap {
                    revision,
                    succeeded,
                }),
            ) => {
                if *succeeded {
                    report.acknowledged_writes += 1;
                    match logged {
                        Some(event) if event.revision == *revision => {
                            check_write_event(op, event, key, &mut report)
                        }
                        _ => report.flag(
                            "acknowledged write lost",
                            format!(
                                "txn {key}={value:?} at revision {revision} is not in the log there"
                            ),
                        ),
                    }
                    let before = timeline.at(key, revision - 1).map(|(v, _)| v);
                    if before != *expect {
                        report.flag(
                            "txn compare wrong",
                            format!(
                                "txn on {key} succeeded at revision {revision} expecting {expect:?}, \
                                 the value was {before:?}"
                            ),
                        );
                    }
                    placed.push(Placed {
                        op,
                        position: 2 * revision,
                        returned: true,
                    });
                } else {
                    if let Some(event) = logged {
                        report.flag(
                            "refused write applied",
                            format!(
                                "txn said its compare failed but {value:?} is at revision {}",
                                event.revision
                            ),
                        );
                    }
                    let now = timeline.at(key, *revision).map(|(v, _)| v);
                    if now == *expect {
                        report.flag(
                            "txn compare wrong",
                            format!(
                                "txn on {key} failed at revision {revision} though the value \
                                 was the expected {expect:?}"
                            ),
                        );
                    }
                    report.linearizable_reads += 1;
                    placed.push(Placed {
                        op,
                        position: 2 * revision + 1,
                        returned: true,
                    });
                }
            }
            (Request::Delete { .. }, Outcome::Ok(Response::Delete { revision, deleted })) => {
                if *deleted > 0 {
                    report.acknowledged_writes += 1;
                    if deletes.contains_key(&(*revision, key)) {
                        claimed_deletes.insert((*revision, key));
                    } else {
                        report.flag(
                            "acknowledged write lost",
                            format!("delete of {key} at revision {revision} is not in the log"),
                        );
                    }
                    placed.push(Placed {
                        op,
                        position: 2 * revision,
                        returned: true,
                    });
                } else {
                    if let Some(found) = timeline.at(key, *revision) {
                        report.flag(
                            "stale read",
                            format!(
                                "delete of {key} found nothing at revision {revision}; the log \
                                 has {found:?}"
                            ),
                        );
                    }
                    report.linearizable_reads += 1;
                    placed.push(Placed {
                        op,
                        position: 2 * revision + 1,
                        returned: true,
                    });
                }
            }
            (Request::Get { linearizable, .. }, Outcome::Ok(Response::Get { revision, value })) => {
                let expected = timeline.at(key, *revision);
                if expected != *value {
                    report.flag(
                        if *linearizable {
                            "stale read"
                        } else {
                            "serializable read wrong"
                        },
                        format!(
                            "client {} read {key} at revision {revision}: {value:?}, the log has \
                             {expected:?}",
                            op.client
                        ),
                    );
                }
                if *revision > history.final_revision {
                    report.flag(
                        "read from the future",
                        format!("revision {revision} > final {}", history.final_revision),
                    );
                }
                if *linearizable {
                    report.linearizable_reads += 1;
                    placed.push(Placed {
                        op,
                        position: 2 * revision + 1,
                        returned: true,
                    });
                }
            }
            (Request::LeaseGrant, Outcome::Ok(Response::LeaseGrant { .. })) => {}
            (Request::LeaseKeepAlive { lease }, Outcome::Ok(Response::LeaseKeepAlive { ttl })) => {
                report.keep_alives += 1;
                // Clients keep alive only leases granted to them. Leases outlive the run, so
                // one is gone only if a revocation was sent before the answer came.
                let revoking = first_revoke_sent
                    .get(lease)
                    .is_some_and(|sent| *sent < op.returned_us);
                if *ttl <= 0 && !revoking {
                    report.flag(
                        "lease lost",
                        format!(
                            "client {}'s keep-alive of lease {lease:x}, granted and never \
                             revoked, answered TTL {ttl}",
                            op.client
                        ),
                    );
                }
                if *ttl > 0 && *ttl != crate::workload::LEASE_TTL_SECONDS {
                    report.flag(
                        "keep-alive TTL wrong",
                        format!(
                            "lease {lease:x} renewed to {ttl} s, granted for {} s",
                            crate::workload::LEASE_TTL_SECONDS
                        ),
                    );
                }
            }
            (Request::LeaseRevoke { lease }, Outcome::Ok(Response::LeaseRevoke { revision })) => {
                // If the revocation deleted keys, they went at its revision, together: every
                // key attached just before. If it deleted none (its revision is then the one
                // it saw), no key was attached at that revision.
                let attached_at = |key: &str, at: i64| {
                    timeline
                        .at(key, at)
                        .is_some_and(|(v, _)| lease_of_value.get(v.as_str()) == Some(lease))
                };
                let deleted_any = timeline.versions.keys().any(|key| {
                    let at = (*revision, key.as_str());
                    deletes.contains_key(&at)
                        && !deleted_by_request.contains(&at)
                        && attached_at(key, revision - 1)
                });
                let seen_at = if deleted_any { revision - 1 } else { *revision };
                for key in timeline.versions.keys() {
                    if attached_at(key, seen_at)
                        && !deletes.contains_key(&(*revision, key.as_str()))
                    {
                        report.flag(
                            "lease revoke left a key",
                            format!(
                                "lease {lease:x} revoked at revision {revision}, but {key} \
                                 (attached to it at {seen_at}) was not deleted there"
                            ),
                        );
                    }
                }
                // And nothing is attached to it afterwards.
                for event in events.iter().filter(|e| e.revision > *revision) {
                    let late = event
                        .value
                        .as_deref()
                        .is_some_and(|v| lease_of_value.get(v) == Some(lease));
                    if late {
                        report.flag(
                            "put with a revoked lease",
                            format!(
                                "{}={:?} attached to lease {lease:x} at revision {}, revoked at \
                                 {revision}",
                                event.key, event.value, event.revision
                            ),
                        );
                    }
                }
                placed.push(Placed {
                    op,
                    position: 2 * revision + i64::from(!deleted_any),
                    returned: true,
                });
            }
            (request, outcome) => report.flag(
                "answer of the wrong kind",
                format!("{request:?} answered {outcome:?}"),
            ),
        }
    }

    // Nothing in the log that nobody wrote.
    for event in &events {
        match &event.value {
            Some(value) if !claimed_values.contains(value.as_str()) => report.flag(
                "write nobody made",
                format!("{}={value:?} at revision {}", event.key, event.revision),
            ),
            None if claimed_deletes.contains(&(event.revision, event.key.as_str()))
                || by_revocation(event, &timeline) => {}
            None => {
                let budget = unknown_deletes.entry(event.key.as_str()).or_default();
                if *budget == 0 {
                    report.flag(
                        "write nobody made",
                        format!("delete of {} at revision {}", event.key, event.revision),
                    );
                } else {
                    *budget -= 1;
                }
            }
            _ => {}
        }
    }

    check_real_time(&placed, &mut report);

    // The end state is the log replayed.
    let mut end: BTreeMap<&str, (String, i64)> = BTreeMap::new();
    for key in timeline.versions.keys() {
        if let Some(v) = timeline.at(key, history.final_revision) {
            end.insert(key, v);
        }
    }
    let reported: BTreeMap<&str, (String, i64)> = history
        .final_state
        .iter()
        .map(|(k, v, r)| (k.as_str(), (v.clone(), *r)))
        .collect();
    if end != reported {
        report.flag(
            "final state differs from the log",
            format!("read {reported:?}, log {end:?}"),
        );
    }
    report
}

/// A write found in the log: its key and value are the request's.
fn check_write_event(op: &Operation, event: &Event, key: &str, report: &mut Report) {
    if event.key != key {
        report.flag(
            "write on the wrong key",
            format!(
                "{:?} written to {} instead of {key}",
                op.request.written_value(),
                event.key
            ),
        );
    }
}

/// Checks the watch and returns its events in order.
fn check_watch(history: &History, report: &mut Report) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    let mut closed_revision = 0;
    for response in &history.watch {
        let mut last_in_response = 0;
        for event in &response.events {
            if event.revision < last_in_response || event.revision <= closed_revision {
                report.flag(
                    if event.revision == closed_revision {
                        "watch split a revision"
                    } else {
                        "watch out of order"
                    },
                    format!(
                        "{} at revision {} after revision {}",
                        event.key,
                        event.revision,
                        closed_revision.max(last_in_response)
                    ),
                );
                continue;
            }
            if !seen.insert((event.revision, event.key.clone())) {
                report.flag(
                    "watch event twice",
                    format!("{} at revision {}", event.key, event.revision),
                );
                continue;
            }
            last_in_response = event.revision;
            events.push(event.clone());
        }
        closed_revision = closed_revision.max(last_in_response);
    }
    // Every revision from the first write (2 in a new cluster) to the end, none missing.
    let mut expected = 2;
    for event in &events {
        if event.revision > expected {
            report.flag(
                "watch missed revisions",
                format!("revisions {expected}..{} never came", event.revision - 1),
            );
        }
        expected = event.revision + 1;
    }
    if expected <= history.final_revision {
        report.flag(
            "watch missed revisions",
            format!(
                "revisions {expected}..={} never came",
                history.final_revision
            ),
        );
    }
    events
}

/// A watch from a past revision gets exactly the log from there on: the same events, in the
/// same order, with the same previous values (but at a compaction revision, where none is
/// left), as far as it read; and it is cancelled as compacted only if its start was.
fn check_segments(history: &History, log: &[Event], report: &mut Report) {
    for segment in &history.segments {
        if let Some(compacted) = segment.compacted
            && segment.start_revision > compacted
        {
            report.flag(
                "watch refused as compacted",
                format!(
                    "a watch from revision {} on m{} was cancelled as compacted at {compacted}",
                    segment.start_revision, segment.member
                ),
            );
        }
        let from = log.partition_point(|e| e.revision < segment.start_revision);
        let mut expected = log[from..].iter();
        let mut last_revision = 0;
        let mut closed = 0;
        // After the first difference the rest of the segment is out of step with the log:
        // one report per segment.
        'segment: for response in &segment.responses {
            for event in &response.events {
                if event.revision == closed {
                    report.flag(
                        "watch split a revision",
                        format!(
                            "revision {} in two responses of a watch from {} on m{}",
                            event.revision, segment.start_revision, segment.member
                        ),
                    );
                }
                last_revision = event.revision;
                // A watch that did not ask for previous values gets none.
                let expected_next = expected.next().map(|want| {
                    if segment.prev_kv {
                        want.clone()
                    } else {
                        Event {
                            prev_value: None,
                            ..want.clone()
                        }
                    }
                });
                match expected_next.as_ref() {
                    Some(want) if want == event => {}
                    // The event at a compaction revision has no previous value left to send
                    // (etcd sends it without, and so do we).
                    Some(want)
                        if event.prev_value.is_none()
                            && history.compactions.contains(&event.revision)
                            && Event {
                                prev_value: None,
                                ..want.clone()
                            } == *event => {}
                    want => {
                        report.flag(
                            "watch from history wrong",
                            format!(
                                "a watch from revision {} on m{} got {event:?} where the log has \
                                 {want:?}",
                                segment.start_revision, segment.member
                            ),
                        );
                        break 'segment;
                    }
                }
            }
            closed = last_revision;
        }
    }
}

/// An operation that returned before another was sent comes first in the order.
fn check_real_time(placed: &[Placed], report: &mut Report) {
    let mut by_return: Vec<&Placed> = placed.iter().filter(|p| p.returned).collect();
    by_return.sort_by_key(|p| p.op.returned_us);
    let mut by_invoke: Vec<&Placed> = placed.iter().collect();
    by_invoke.sort_by_key(|p| p.op.invoked_us);
    let mut done = 0;
    let mut latest: Option<&Placed> = None;
    for b in by_invoke {
        while done < by_return.len() && by_return[done].op.returned_us < b.op.invoked_us {
            let a = by_return[done];
            if latest.is_none_or(|l| a.position > l.position) {
                latest = Some(a);
            }
            done += 1;
        }
        if let Some(a) = latest
            && a.position > b.position
        {
            report.flag(
                "not linearizable",
                format!(
                    "{:?} (client {}, returned at {} µs, position {}) came before {:?} (client \
                     {}, sent at {} µs, position {})",
                    a.op.request,
                    a.op.client,
                    a.op.returned_us,
                    describe(a.position),
                    b.op.request,
                    b.op.client,
                    b.op.invoked_us,
                    describe(b.position)
                ),
            );
        }
    }
}

fn describe(position: i64) -> String {
    if position % 2 == 0 {
        format!("write at revision {}", position / 2)
    } else {
        format!("read at revision {}", position / 2)
    }
}

/// A progress notification at revision R promises that every event up to R has been sent:
/// no event at or below R may come after it on the main watch (which, when it is reopened,
/// starts after the last event it has). etcd issue 15220 was a notification sent ahead of
/// events still queued.
fn check_progress(history: &History, report: &mut Report) {
    for &(received, revision) in &history.progress {
        let early = history.watch[received.min(history.watch.len())..]
            .iter()
            .flat_map(|r| &r.events)
            .find(|e| e.revision <= revision);
        if let Some(event) = early {
            report.flag(
                "progress notification ahead",
                format!(
                    "progress at revision {revision} after {received} responses, then an event \
                     at revision {} on {}",
                    event.revision, event.key
                ),
            );
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::WatchResponse;

    fn op(client: usize, at: (u64, u64), request: Request, outcome: Outcome) -> Operation {
        Operation {
            client,
            invoked_us: at.0,
            returned_us: at.1,
            request,
            outcome,
        }
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }

    fn get(key: &str) -> Request {
        Request::Get {
            key: key.into(),
            linearizable: true,
            via_txn: false,
        }
    }

    fn event(revision: i64, key: &str, value: Option<&str>, prev: Option<&str>) -> WatchResponse {
        WatchResponse {
            header_revision: revision,
            events: vec![Event {
                revision,
                key: key.into(),
                value: value.map(str::to_string),
                prev_value: prev.map(str::to_string),
            }],
        }
    }

    /// Two puts, a read of the second, a delete: all as it should be.
    fn good() -> History {
        History {
            operations: vec![
                op(
                    0,
                    (0, 10),
                    put("k", "a"),
                    Outcome::Ok(Response::Put { revision: 2 }),
                ),
                op(
                    1,
                    (20, 30),
                    put("k", "b"),
                    Outcome::Ok(Response::Put { revision: 3 }),
                ),
                op(
                    0,
                    (40, 50),
                    get("k"),
                    Outcome::Ok(Response::Get {
                        revision: 3,
                        value: Some(("b".into(), 3)),
                    }),
                ),
                op(
                    1,
                    (60, 70),
                    Request::Delete { key: "k".into() },
                    Outcome::Ok(Response::Delete {
                        revision: 4,
                        deleted: 1,
                    }),
                ),
                op(
                    2,
                    (65, 90),
                    put("k", "lost-in-flight"),
                    Outcome::Unknown("timeout".into()),
                ),
            ],
            watch: vec![
                event(2, "k", Some("a"), None),
                event(3, "k", Some("b"), Some("a")),
                event(4, "k", None, Some("b")),
            ],
            segments: vec![],
            compactions: vec![],
            progress: Vec::new(),
            final_state: vec![],
            final_revision: 4,
        }
    }

    fn kinds(history: &History) -> Vec<&'static str> {
        check(history).violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_correct_history_passes() {
        let report = check(&good());
        assert!(report.ok(), "{report}");
        assert_eq!(report.acknowledged_writes, 3);
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        let mut h = good();
        h.watch.remove(1);
        // Revision 3 missing from the watch, b never written, and the delete's prev is wrong.
        let found = kinds(&h);
        assert!(found.contains(&"acknowledged write lost"), "{found:?}");
        assert!(found.contains(&"watch missed revisions"), "{found:?}");
    }

    #[test]
    fn a_stale_linearizable_read_is_found() {
        let mut h = good();
        h.operations[2].outcome = Outcome::Ok(Response::Get {
            revision: 2,
            value: Some(("a".into(), 2)),
        });
        // The value is right for revision 2, but b was acknowledged before the read was sent.
        assert_eq!(kinds(&h), vec!["not linearizable"]);
        // A serializable read may be that stale.
        h.operations[2].request = Request::Get {
            key: "k".into(),
            linearizable: false,
            via_txn: false,
        };
        assert!(check(&h).ok());
    }

    #[test]
    fn a_read_of_a_value_never_there_is_found() {
        let mut h = good();
        h.operations[2].outcome = Outcome::Ok(Response::Get {
            revision: 3,
            value: Some(("a".into(), 2)),
        });
        assert_eq!(kinds(&h), vec!["stale read"]);
    }

    #[test]
    fn writes_out_of_real_time_order_are_found() {
        let mut h = good();
        // The second put was sent after the first returned, yet got the earlier revision.
        h.operations[0].outcome = Outcome::Ok(Response::Put { revision: 3 });
        h.operations[1].outcome = Outcome::Ok(Response::Put { revision: 2 });
        h.operations[0].request = put("k", "b");
        h.operations[1].request = put("k", "a");
        assert!(kinds(&h).contains(&"not linearizable"));
    }

    #[test]
    fn refused_and_phantom_and_repeated_writes_are_found() {
        let mut h = good();
        h.operations[1].outcome = Outcome::Failed("etcdserver: request is too large".into());
        assert!(kinds(&h).contains(&"refused write applied"));

        let mut h = good();
        h.watch.push(event(5, "k", Some("nobody"), None));
        h.final_revision = 5;
        h.final_state = vec![("k".into(), "nobody".into(), 5)];
        assert_eq!(kinds(&h), vec!["write nobody made"]);

        let mut h = good();
        h.watch.push(event(5, "k", Some("b"), None));
        h.final_revision = 5;
        h.final_state = vec![("k".into(), "b".into(), 5)];
        assert!(kinds(&h).contains(&"write applied twice"));
    }

    #[test]
    fn a_broken_watch_is_found() {
        let mut h = good();
        h.watch.swap(0, 1);
        assert!(kinds(&h).contains(&"watch out of order"));
        let mut h = good();
        h.watch.insert(2, event(3, "k", Some("b"), Some("a")));
        assert!(kinds(&h).contains(&"watch split a revision"));
        let mut h = good();
        h.watch[2].events[0].prev_value = Some("a".into());
        assert_eq!(kinds(&h), vec!["watch prev_kv wrong"]);
    }

    #[test]
    fn an_unknown_write_that_took_effect_is_placed_by_the_log() {
        let mut h = good();
        h.watch.push(event(5, "k", Some("lost-in-flight"), None));
        h.final_revision = 5;
        h.final_state = vec![("k".into(), "lost-in-flight".into(), 5)];
        let report = check(&h);
        assert!(report.ok(), "{report}");
        assert_eq!(report.unknown_writes_applied, 1);
        // But not before it was sent: a read that returned before it was sent cannot see it.
        h.operations.push(op(
            3,
            (60, 64),
            get("k"),
            Outcome::Ok(Response::Get {
                revision: 5,
                value: Some(("lost-in-flight".into(), 5)),
            }),
        ));
        assert!(kinds(&h).contains(&"not linearizable"));
    }

    #[test]
    fn watches_from_history_must_be_slices_of_the_log() {
        use crate::history::WatchSegment;
        let mut h = good();
        let segment = |start, responses: Vec<WatchResponse>, compacted| WatchSegment {
            start_revision: start,
            member: 0,
            responses,
            compacted,
            prev_kv: true,
        };
        h.segments = vec![
            segment(3, vec![h.watch[1].clone(), h.watch[2].clone()], None),
            segment(4, vec![h.watch[2].clone()], None),
            segment(2, vec![], Some(2)),
        ];
        assert!(check(&h).ok(), "{}", check(&h));
        // A gap: revision 3 skipped by a watch from 3.
        h.segments = vec![segment(3, vec![h.watch[2].clone()], None)];
        assert_eq!(kinds(&h), vec!["watch from history wrong"]);
        // Cancelled as compacted though it started after the compaction.
        h.segments = vec![segment(4, vec![], Some(3))];
        assert_eq!(kinds(&h), vec!["watch refused as compacted"]);

        // Without previous values asked for: the log's events, none of them with one.
        let without_prev = |responses: &[WatchResponse]| {
            let mut responses = responses.to_vec();
            for e in responses.iter_mut().flat_map(|r| r.events.iter_mut()) {
                e.prev_value = None;
            }
            responses
        };
        let unasked = |responses| WatchSegment {
            prev_kv: false,
            ..segment(3, responses, None)
        };
        h.segments = vec![unasked(without_prev(&h.watch[1..]))];
        assert!(check(&h).ok(), "{}", check(&h));
        // Previous values sent though not asked for.
        h.segments = vec![unasked(h.watch[1..].to_vec())];
        assert_eq!(kinds(&h), vec!["watch from history wrong"]);
        // And missing where they were.
        h.segments = vec![segment(3, without_prev(&h.watch[1..]), None)];
        assert_eq!(kinds(&h), vec!["watch from history wrong"]);
    }

    #[test]
    fn lease_revocations_delete_their_keys_together_and_for_good() {
        // c and d are attached to lease 7; revoking it deletes both at revision 4.
        let leased = |key: &str, value: &str| Request::Put {
            key: key.into(),
            value: value.into(),
            lease: 7,
        };
        let mut h = History {
            operations: vec![
                op(
                    0,
                    (0, 10),
                    leased("c", "1"),
                    Outcome::Ok(Response::Put { revision: 2 }),
                ),
                op(
                    0,
                    (20, 30),
                    leased("d", "2"),
                    Outcome::Ok(Response::Put { revision: 3 }),
                ),
                op(
                    1,
                    (40, 50),
                    Request::LeaseRevoke { lease: 7 },
                    Outcome::Ok(Response::LeaseRevoke { revision: 4 }),
                ),
            ],
            watch: vec![
                event(2, "c", Some("1"), None),
                event(3, "d", Some("2"), None),
                WatchResponse {
                    header_revision: 4,
                    events: vec![
                        Event {
                            revision: 4,
                            key: "c".into(),
                            value: None,
                            prev_value: Some("1".into()),
                        },
                        Event {
                            revision: 4,
                            key: "d".into(),
                            value: None,
                            prev_value: Some("2".into()),
                        },
                    ],
                },
            ],
            final_revision: 4,
            ..History::default()
        };
        let report = check(&h);
        assert!(report.ok(), "{report}");
        // One key left behind.
        h.watch[2].events.pop();
        h.final_state = vec![("d".into(), "2".into(), 3)];
        assert_eq!(kinds(&h), vec!["lease revoke left a key"]);
        // A put with the lease after it was revoked.
        let mut h2 = h.clone();
        h2.watch[2].events.push(Event {
            revision: 4,
            key: "d".into(),
            value: None,
            prev_value: Some("2".into()),
        });
        h2.operations.push(op(
            2,
            (60, 70),
            leased("e", "3"),
            Outcome::Ok(Response::Put { revision: 5 }),
        ));
        h2.watch.push(event(5, "e", Some("3"), None));
        h2.final_revision = 5;
        h2.final_state = vec![("e".into(), "3".into(), 5)];
        assert_eq!(kinds(&h2), vec!["put with a revoked lease"]);
    }

    /// A key deleted by a client before its lease is revoked: the revocation deletes nothing
    /// and reads the revision the delete made; it is not placed as that delete.
    #[test]
    fn a_revocation_is_not_credited_with_a_clients_delete() {
        let h = History {
            operations: vec![
                op(
                    0,
                    (0, 10),
                    Request::Put {
                        key: "k".into(),
                        value: "1".into(),
                        lease: 7,
                    },
                    Outcome::Ok(Response::Put { revision: 2 }),
                ),
                op(
                    0,
                    (20, 30),
                    Request::Delete { key: "k".into() },
                    Outcome::Ok(Response::Delete {
                        revision: 3,
                        deleted: 1,
                    }),
                ),
                op(
                    1,
                    (31, 35),
                    get("k"),
                    Outcome::Ok(Response::Get {
                        revision: 3,
                        value: None,
                    }),
                ),
                op(
                    0,
                    (40, 50),
                    Request::LeaseRevoke { lease: 7 },
                    Outcome::Ok(Response::LeaseRevoke { revision: 3 }),
                ),
            ],
            watch: vec![
                event(2, "k", Some("1"), None),
                event(3, "k", None, Some("1")),
            ],
            final_revision: 3,
            ..History::default()
        };
        let report = check(&h);
        assert!(report.ok(), "{report}");
    }

    #[test]
    fn the_end_state_must_be_the_log_replayed() {
        let mut h = good();
        h.final_state = vec![("k".into(), "b".into(), 3)];
        assert_eq!(kinds(&h), vec!["final state differs from the log"]);
    }

    #[test]
    fn progress_notifications_must_not_run_ahead_of_events() {
        // good() has events at revisions 2, 3 and 4, one per response.
        let mut h = good();
        h.progress = vec![(0, 1), (2, 3), (3, 4)];
        assert!(kinds(&h).is_empty(), "{:?}", check(&h).violations);
        // Progress at 3 after only the first response: the event at 3 came later.
        h.progress = vec![(1, 3)];
        assert_eq!(kinds(&h), vec!["progress notification ahead"]);
    }

    #[test]
    fn a_lease_kept_alive_must_exist_until_revoked() {
        let keep_alive = |at: (u64, u64), ttl: i64| {
            op(
                3,
                at,
                Request::LeaseKeepAlive { lease: 9 },
                Outcome::Ok(Response::LeaseKeepAlive { ttl }),
            )
        };
        let grant = || {
            op(
                3,
                (100, 110),
                Request::LeaseGrant,
                Outcome::Ok(Response::LeaseGrant { id: 9 }),
            )
        };
        let full = crate::workload::LEASE_TTL_SECONDS;
        let mut h = good();
        h.operations.extend([
            grant(),
            keep_alive((120, 130), full),
            // Gone, though nobody revoked it: a grant lost by a failed member.
            keep_alive((140, 150), 0),
            // Renewed to a TTL it was never granted.
            keep_alive((160, 170), full + 1),
        ]);
        assert_eq!(kinds(&h), vec!["lease lost", "keep-alive TTL wrong"]);

        // Once a revocation has been sent (its answer lost), TTL 0 is a possible answer.
        let mut h = good();
        h.operations.extend([
            grant(),
            op(
                3,
                (120, 130),
                Request::LeaseRevoke { lease: 9 },
                Outcome::Unknown("timeout".into()),
            ),
            keep_alive((140, 150), 0),
        ]);
        assert!(kinds(&h).is_empty(), "{:?}", check(&h).violations);
    }
}
