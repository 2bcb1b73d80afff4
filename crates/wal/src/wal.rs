//! The write-ahead log itself: create, open (replay and repair), append, trim.
//!
//! Cost per [`Wal::save`]: the batch is encoded into one reused buffer, written with one
//! `write`, and made durable with one `fdatasync`, however many entries it carries. That one
//! fsync per Raft `Ready` is what lets concurrent client writes share a disk flush. Cutting a
//! segment (rare: once per `segment_size_bytes`) adds an fsync of the new file and one of the
//! directory.

use std::convert::Infallible;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use etcd_failpoints as failpoints;
use protobuf::Message;
use raft::eraftpb::{Entry, HardState};

use crate::decode::{self, DecodeEnd, Record, SnapshotMarker};
use crate::error::WalError;
use crate::record::{self, EncodeError, RECORD_PAYLOAD_BYTES_MAX, RecordType};
use crate::replay::{Origin, Replay, Replayed};
use crate::segment::{self, Segment};

/// Tunables, each with etcd's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Once the current segment reaches this size a new one is started. Segments are the unit
    /// [`Wal::release_to`] deletes, so this is also the granularity of trimming.
    pub segment_size_bytes: u64,
    /// [`Wal::release_to`] keeps at least this many of the newest segments, needed or not
    /// (etcd's `--max-wals`); `usize::MAX` keeps every segment. The segments recovery needs
    /// are kept whatever this says.
    pub retain_segments: usize,
    /// False skips every fdatasync (etcd's `--unsafe-no-fsync`, for tests): a crash of the
    /// machine then loses acknowledged writes.
    pub fsync: bool,
    /// Tests only (power-loss runs): bytes written since the last fdatasync stay in this
    /// process's memory instead of the page cache, and reach the file only with the next
    /// fdatasync (or, unsynced, when the segment is cut, as the kernel's writeback would).
    /// Killing the process then loses them, as a power cut loses the page cache, which proves
    /// that nothing acknowledged depends on a write that was never synced.
    pub lose_unsynced_on_crash: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size_bytes: 64 << 20,
            retain_segments: 1,
            fsync: true,
            lose_unsynced_on_crash: false,
        }
    }
}

/// What [`Wal::open`] read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The bytes given to [`Wal::create`].
    pub metadata: Vec<u8>,
    /// The last hard state saved (default if none was).
    pub hard_state: HardState,
    /// The last snapshot marker saved, if any.
    pub snapshot: Option<SnapshotMarker>,
    /// The log after the snapshot marker (or from its first entry when there is none):
    /// contiguous, conflicting tails already resolved.
    pub entries: Vec<Entry>,
}

/// An open write-ahead log. One per directory: the directory is locked while this is alive.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// The directory opened: held for its lock and used to fsync renames and deletions.
    dir_handle: File,
    opts: WalOptions,
    metadata: Vec<u8>,
    /// Live segments, oldest first. Never empty; the last is the one appended to.
    segments: Vec<Segment>,
    tail: File,
    tail_bytes: u64,
    /// Latest state saved, repeated at the start of every new segment so that trimming old
    /// segments never loses it.
    hard_state: HardState,
    snapshot: Option<SnapshotMarker>,
    /// Index of the last entry written (or of the snapshot marker, if that is beyond it); 0 for
    /// an empty log. New segments are named one past it.
    last_index: u64,
    /// Encode buffer reused across saves so steady-state appends do not allocate.
    buf: Vec<u8>,
    /// Set when a write or fsync failed: the file's tail is then unknown. See
    /// [`WalError::Poisoned`].
    poisoned: bool,
    /// True when the tail holds bytes written since its last fsync (commit-only hard states).
    unsynced: bool,
    /// With [`WalOptions::lose_unsynced_on_crash`]: what was written since the last fdatasync,
    /// not yet given to the file.
    held: Vec<u8>,
    /// fdatasyncs of the tail so far, for metrics and tests.
    fsyncs: u64,
    /// Told how long each fdatasync took (the server's `etcd_disk_wal_fsync_duration_seconds`).
    fsync_observer: Option<FsyncObserver>,
}

/// A callback told each fdatasync's duration.
struct FsyncObserver(Box<dyn FnMut(std::time::Duration) + Send>);

impl std::fmt::Debug for FsyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FsyncObserver")
    }
}

/// A save buffer grown past this by one huge batch is shrunk back, so one burst does not pin
/// memory for the life of the process.
const RETAINED_BUFFER_BYTES_MAX: usize = 4 << 20;

impl Wal {
    /// True if `dir` holds any `*.wal` file, i.e. [`Wal::open`] rather than [`Wal::create`] is
    /// what to call.
    pub fn exists(dir: &Path) -> bool {
        segment::any_segment_files(dir)
    }

    /// Creates a new log in `dir` (created if missing), recording `metadata` at the start of
    /// every segment. Fails if `dir` already holds a log.
    pub fn create(dir: &Path, metadata: &[u8], opts: WalOptions) -> Result<Wal, WalError> {
        if Wal::exists(dir) {
            return Err(WalError::AlreadyExists(dir.to_path_buf()));
        }
        let dir_is_new = !dir.exists();
        fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
        if dir_is_new && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The new directory entry itself must survive a crash, or so would not the log.
            let parent_handle =
                File::open(parent).map_err(|e| WalError::io("open directory", parent, e))?;
            segment::sync_dir(parent, &parent_handle)?;
        }
        let dir_handle = lock_dir(dir)?;
        // Checked again under the lock: another process may have created a log meanwhile.
        if Wal::exists(dir) {
            return Err(WalError::AlreadyExists(dir.to_path_buf()));
        }
        segment::remove_temp_files(dir)?;

        let hard_state = HardState::default();
        let mut header = Vec::new();
        encode_segment_header(&mut header, metadata, &hard_state, None)?;
        let (first, tail) = segment::create(dir, &dir_handle, 0, 0, &header)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            dir_handle,
            opts,
            metadata: metadata.to_vec(),
            segments: vec![first],
            tail,
            tail_bytes: header.len() as u64,
            hard_state,
            snapshot: None,
            last_index: 0,
            buf: Vec::new(),
            poisoned: false,
            unsynced: false,
            held: Vec::new(),
            fsyncs: 0,
            fsync_observer: None,
        })
    }

    /// Opens the log in `dir`: reads every segment, cuts off a torn tail of the last one (with a
    /// warning), and returns what was recovered with the log ready to append after it.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered), WalError> {
        let dir_handle = lock_dir(dir)?;
        segment::remove_temp_files(dir)?;
        let segments = segment::list(dir)?;
        if segments.is_empty() {
            return Err(WalError::NoSegments(dir.to_path_buf()));
        }
        segment::check_sequence(&segments)?;

        let (metadata, replayed, torn_at) = replay_segments(dir, &segments)?;
        let (tail, tail_bytes) = open_tail(&segments[segments.len() - 1].path, torn_at)?;

        let snapshot_index = replayed.snapshot.map_or(0, |s| s.index);
        let last_index = replayed
            .entries
            .last()
            .map_or(snapshot_index, |e| e.index.max(snapshot_index));
        let wal = Wal {
            dir: dir.to_path_buf(),
            dir_handle,
            opts,
            metadata: metadata.clone(),
            segments,
            tail,
            tail_bytes,
            hard_state: replayed.hard_state.clone(),
            snapshot: replayed.snapshot,
            last_index,
            buf: Vec::new(),
            poisoned: false,
            unsynced: false,
            held: Vec::new(),
            fsyncs: 0,
            fsync_observer: None,
        };
        let recovered = Recovered {
            metadata,
            hard_state: replayed.hard_state,
            snapshot: replayed.snapshot,
            entries: replayed.entries,
        };
        Ok((wal, recovered))
    }

    /// Appends `entries` then `hard_state` (if given) and makes them durable with one
    /// `fdatasync`. Nothing to write means no write and no sync.
    ///
    /// A save that only moves the commit index (no entries, same term and vote) is written but
    /// not synced, as etcd does: a lost commit index is learnt again from the leader or from the
    /// backend's consistent index, so it need not cost a disk flush. It becomes durable with
    /// the next synced save.
    ///
    /// `entries` must be consecutive, and the first must be at most one past the last index in
    /// the log (equal or lower replaces a conflicting tail); anything else would leave a hole
    /// that makes the log unreadable, so it is refused before writing.
    pub fn save(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        self.check_append(entries)?;

        self.buf.clear();
        for entry in entries {
            encode_message(&mut self.buf, RecordType::Entry, entry, "entry")?;
        }
        if let Some(hs) = hard_state {
            encode_message(&mut self.buf, RecordType::HardState, hs, "hard state")?;
        }
        let must_sync = !entries.is_empty()
            || hard_state.is_some_and(|hs| {
                hs.term != self.hard_state.term || hs.vote != self.hard_state.vote
            });
        self.append_buffer(must_sync)?;

        if let Some(last) = entries.last() {
            self.last_index = last.index;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        self.cut_if_full()
    }

    /// Appends a snapshot marker and makes it durable. From then on entries at or below
    /// `marker.index` may be trimmed by [`Wal::release_to`] and are not returned by
    /// [`Wal::open`].
    pub fn save_snapshot(&mut self, marker: SnapshotMarker) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        self.buf.clear();
        record::encode(
            &mut self.buf,
            RecordType::SnapshotMarker,
            &marker.to_bytes(),
        )
        .map_err(too_large)?;
        self.append_buffer(true)?;
        self.snapshot = Some(marker);
        self.last_index = self.last_index.max(marker.index);
        self.cut_if_full()
    }

    /// Deletes whole segments, oldest first, whose entries are all below `index` and not needed
    /// to recover from the latest snapshot marker. The last segment is never deleted, and
    /// without a snapshot marker nothing is (the entries would be gone with no snapshot to stand
    /// in for them).
    pub fn release_to(&mut self, index: u64) -> Result<(), WalError> {
        let Some(snapshot) = self.snapshot else {
            return Ok(());
        };
        // Entries below `bound` are not needed: they are below `index` and at or below the
        // marker recovery will resume from.
        let bound = index.min(snapshot.index.saturating_add(1));
        let deletable = deletable_prefix(&self.segments, bound).min(
            self.segments
                .len()
                .saturating_sub(self.opts.retain_segments),
        );
        for _ in 0..deletable {
            let path = self.segments[0].path.clone();
            fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
            // One directory fsync per deletion keeps deletions durable in order: a crash can
            // leave the oldest segments, never a hole in the sequence.
            segment::sync_dir(&self.dir, &self.dir_handle)?;
            self.segments.remove(0);
        }
        Ok(())
    }

    /// How many times the tail has been fdatasynced since this log was opened.
    /// Calls `observe` with the duration of every fdatasync from now on.
    pub fn set_fsync_observer(&mut self, observe: Box<dyn FnMut(std::time::Duration) + Send>) {
        self.fsync_observer = Some(FsyncObserver(observe));
    }

    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// Refuses entries that would not read back as a contiguous log.
    fn check_append(&self, entries: &[Entry]) -> Result<(), WalError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let next_max = if self.last_index == 0 {
            u64::MAX
        } else {
            self.last_index.saturating_add(1)
        };
        if first.index == 0 || first.index > next_max {
            return Err(WalError::InvalidAppend {
                found: first.index,
                next_max,
            });
        }
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index.wrapping_add(1) {
                return Err(WalError::InvalidAppend {
                    found: pair[1].index,
                    next_max: pair[0].index.saturating_add(1),
                });
            }
        }
        Ok(())
    }

    /// Writes `self.buf` to the tail segment, then fdatasyncs it if `sync` (which also makes any
    /// earlier unsynced writes durable). Any failure poisons the log.
    fn append_buffer(&mut self, sync: bool) -> Result<(), WalError> {
        let path = &self.segments[self.segments.len() - 1].path;
        let mut written = if self.opts.lose_unsynced_on_crash {
            self.held.extend_from_slice(&self.buf);
            Ok(())
        } else {
            self.tail
                .write_all(&self.buf)
                .map_err(|e| WalError::io("write", path, e))
        };
        if written.is_ok() {
            self.unsynced = true;
            if sync {
                written = self.sync_tail();
            }
        }
        if written.is_err() {
            self.poisoned = true;
        }
        written?;
        self.tail_bytes += self.buf.len() as u64;
        if self.buf.capacity() > RETAINED_BUFFER_BYTES_MAX {
            self.buf = Vec::new();
        }
        Ok(())
    }

    fn sync_tail(&mut self) -> Result<(), WalError> {
        if !self.opts.fsync || failpoints::switched_on(failpoints::names::UNSAFE_SKIP_FSYNC) {
            self.unsynced = false;
            return Ok(());
        }
        self.write_held()?;
        failpoints::point(failpoints::names::WAL_BEFORE_SYNC);
        let path = &self.segments[self.segments.len() - 1].path;
        let started = std::time::Instant::now();
        self.tail
            .sync_data()
            .map_err(|e| WalError::io("fdatasync", path, e))?;
        failpoints::point(failpoints::names::WAL_AFTER_SYNC);
        if let Some(observe) = self.fsync_observer.as_mut() {
            (observe.0)(started.elapsed());
        }
        self.unsynced = false;
        self.fsyncs += 1;
        Ok(())
    }

    /// Gives the held bytes (see [`WalOptions::lose_unsynced_on_crash`]) to the tail file.
    fn write_held(&mut self) -> Result<(), WalError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let path = &self.segments[self.segments.len() - 1].path;
        self.tail
            .write_all(&self.held)
            .map_err(|e| WalError::io("write", path, e))?;
        self.held.clear();
        Ok(())
    }

    /// Starts a new segment if the tail is full. The old segment is synced first, so it is
    /// complete on disk before the new one appears: only the last segment can ever have a torn
    /// tail.
    fn cut_if_full(&mut self) -> Result<(), WalError> {
        if self.tail_bytes < self.opts.segment_size_bytes {
            return Ok(());
        }
        let result = if self.unsynced {
            self.sync_tail()
        } else {
            Ok(())
        }
        .and_then(|()| self.write_held())
        .and_then(|()| self.cut());
        if result.is_err() {
            // The new segment may exist on disk, carrying a hard state that later appends to the
            // old one would wrongly be replayed before.
            self.poisoned = true;
        }
        result
    }

    fn cut(&mut self) -> Result<(), WalError> {
        let seq = self.segments[self.segments.len() - 1].seq.wrapping_add(1);
        let mut header = Vec::new();
        encode_segment_header(&mut header, &self.metadata, &self.hard_state, self.snapshot)?;
        let (seg, tail) = segment::create(
            &self.dir,
            &self.dir_handle,
            seq,
            self.last_index.saturating_add(1),
            &header,
        )?;
        self.segments.push(seg);
        self.tail = tail;
        self.tail_bytes = header.len() as u64;
        Ok(())
    }
}

/// Reads and replays every segment, oldest first. Returns the metadata, the replayed log, and
/// where the last segment's good records end if a torn tail follows them.
fn replay_segments(
    dir: &Path,
    segments: &[Segment],
) -> Result<(Vec<u8>, Replayed, Option<u64>), WalError> {
    let mut metadata: Option<Vec<u8>> = None;
    let mut replay = Replay::default();
    let mut torn_at = None;
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        let bytes = fs::read(&seg.path).map_err(|e| WalError::io("read", &seg.path, e))?;
        let decoded = decode::decode_segment(&bytes);
        match decoded.end {
            DecodeEnd::Clean => {}
            DecodeEnd::TornTail { offset, reason } if i == last => {
                tracing::warn!(
                    path = %seg.path.display(),
                    offset,
                    discarded_bytes = bytes.len() as u64 - offset,
                    %reason,
                    "wal: truncating torn tail of the last segment: a write interrupted by a crash, never acknowledged; no action needed"
                );
                torn_at = Some(offset);
            }
            // Before the last segment there is no tail: each was fsynced whole before the next
            // one was created.
            DecodeEnd::TornTail { offset, reason } | DecodeEnd::Corrupt { offset, reason } => {
                return Err(WalError::Corrupt {
                    path: seg.path.clone(),
                    offset,
                    reason,
                });
            }
        }
        let mut records = decoded.records.into_iter();
        match (records.next().map(|r| r.record), &metadata) {
            (Some(Record::Metadata(m)), None) => metadata = Some(m),
            (Some(Record::Metadata(m)), Some(first)) if m == *first => {}
            (Some(Record::Metadata(_)), Some(_)) => {
                return Err(WalError::MetadataMismatch(seg.path.clone()));
            }
            _ => return Err(WalError::MissingMetadata(seg.path.clone())),
        }
        for r in records {
            let origin = Origin {
                segment: i,
                offset: r.offset,
            };
            replay.apply(r.record, origin);
        }
    }
    let replayed = replay.finish().map_err(|gap| WalError::EntryGap {
        path: segments[gap.origin.segment].path.clone(),
        offset: gap.origin.offset,
        previous: gap.previous,
        found: gap.found,
    })?;
    // Every segment had metadata or the loop returned; only an empty list gets here without.
    let metadata = metadata.ok_or_else(|| WalError::NoSegments(dir.to_path_buf()))?;
    Ok((metadata, replayed, torn_at))
}

/// Opens the last segment for appending, first cutting it to `torn_at` if given. Returns the
/// handle and the segment's size.
fn open_tail(path: &Path, torn_at: Option<u64>) -> Result<(File, u64), WalError> {
    let tail = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| WalError::io("open", path, e))?;
    if let Some(offset) = torn_at {
        tail.set_len(offset)
            .map_err(|e| WalError::io("truncate", path, e))?;
        tail.sync_all()
            .map_err(|e| WalError::io("fsync", path, e))?;
    }
    let len = tail
        .metadata()
        .map_err(|e| WalError::io("stat", path, e))?
        .len();
    Ok((tail, len))
}

/// How many of the oldest segments hold only entries below `bound`. A segment's surviving
/// entries are all below the `first_index` of every later segment (each was cut one past the
/// last index then written, and a later overwrite only removes entries), so segment `i` may go
/// when the smallest `first_index` after it is at most `bound`. The last segment always stays.
fn deletable_prefix(segments: &[Segment], bound: u64) -> usize {
    let mut later_min = u64::MAX;
    let mut deletable = 0;
    for i in (0..segments.len().saturating_sub(1)).rev() {
        later_min = later_min.min(segments[i + 1].first_index);
        if later_min <= bound {
            // `later_min` only grows as `i` falls, so every older segment qualifies too.
            deletable = i + 1;
            break;
        }
    }
    deletable
}

/// The records every segment starts with: metadata, then the state as of the cut, so that any
/// suffix of the segments replays to the same state.
fn encode_segment_header(
    out: &mut Vec<u8>,
    metadata: &[u8],
    hard_state: &HardState,
    snapshot: Option<SnapshotMarker>,
) -> Result<(), WalError> {
    record::encode(out, RecordType::Metadata, metadata).map_err(too_large)?;
    encode_message(out, RecordType::HardState, hard_state, "hard state")?;
    if let Some(marker) = snapshot {
        record::encode(out, RecordType::SnapshotMarker, &marker.to_bytes()).map_err(too_large)?;
    }
    Ok(())
}

fn encode_message(
    out: &mut Vec<u8>,
    kind: RecordType,
    message: &impl Message,
    what: &'static str,
) -> Result<(), WalError> {
    record::encode_with(out, kind, |o| message.write_to_vec(o)).map_err(|e| match e {
        EncodeError::Payload(e) => WalError::Encode {
            what,
            reason: e.to_string(),
        },
        EncodeError::TooLarge(len) => record_too_large(len),
    })
}

fn too_large(e: EncodeError<Infallible>) -> WalError {
    match e {
        EncodeError::TooLarge(len) => record_too_large(len),
        EncodeError::Payload(never) => match never {},
    }
}

fn record_too_large(len: usize) -> WalError {
    WalError::RecordTooLarge {
        len: len as u64,
        max: RECORD_PAYLOAD_BYTES_MAX as u64,
    }
}

/// Opens `dir` and takes an exclusive lock on it, so two processes (or two `Wal`s) never append
/// to the same log.
fn lock_dir(dir: &Path) -> Result<File, WalError> {
    let handle = File::open(dir).map_err(|e| WalError::io("open directory", dir, e))?;
    match handle.try_lock() {
        Ok(()) => Ok(handle),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(WalError::io("lock directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64, first_index: u64) -> Segment {
        Segment {
            seq,
            first_index,
            path: PathBuf::from(segment::file_name(seq, first_index)),
        }
    }

    #[test]
    fn deletable_prefix_never_takes_the_last_segment() {
        let segs = [seg(0, 0), seg(1, 11), seg(2, 21)];
        assert_eq!(deletable_prefix(&segs, 0), 0);
        assert_eq!(deletable_prefix(&segs, 10), 0);
        assert_eq!(deletable_prefix(&segs, 11), 1);
        assert_eq!(deletable_prefix(&segs, 20), 1);
        assert_eq!(deletable_prefix(&segs, 21), 2);
        assert_eq!(deletable_prefix(&segs, u64::MAX), 2);
        assert_eq!(deletable_prefix(&segs[..1], u64::MAX), 0);
        assert_eq!(deletable_prefix(&[], u64::MAX), 0);
    }

    #[test]
    fn deletable_prefix_accounts_for_overwrites_in_later_segments() {
        // Segment 1 started at 11 but raft then overwrote back to 5, so segment 2 was cut at 7:
        // segment 0 holds live entries 1..=4 and must stay until the bound passes 7.
        let segs = [seg(0, 0), seg(1, 11), seg(2, 7), seg(3, 30)];
        assert_eq!(deletable_prefix(&segs, 6), 0);
        assert_eq!(deletable_prefix(&segs, 7), 2);
        assert_eq!(deletable_prefix(&segs, 30), 3);
    }
}
