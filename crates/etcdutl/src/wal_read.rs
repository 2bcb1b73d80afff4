//! etcd 3.4's WAL, read side: `wal.OpenForRead` then `ReadAll`, as etcdctl's `backup` and
//! `migrate` use them on a data dir whose member may still be writing it.
//!
//! The segments from the one holding the snapshot's index on (etcd's `searchIndex`, with its
//! sequence check) are read record by record, each checked against the CRC-32C chained through
//! all of them. The log ends, without an error, where a segment's records stop (zeroed,
//! preallocated space), where the last one is cut short, or at a torn write in the last
//! segment (a 512-byte sector of the record all zero): read mode does not need the whole log.
//! Anything else is damage, refused naming the file and offset, where etcd would fail (or
//! panic). Memory: one record (at most etcd's 10 MiB) plus the entries kept.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::pb::{self, Entry};
use crate::wal::{CRC, ENTRY, METADATA, SNAPSHOT, STATE};

/// etcd refuses a record this large or larger (`maxWALEntrySizeLimit`).
const RECORD_BYTES_MAX: u64 = 10 * 1024 * 1024;
const SECTOR_BYTES: u64 = 512;
const FRAME_BYTES: u64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum WalReadError {
    /// etcd's `ErrFileNotFound`: no segment, or none reaching back to the snapshot, or a gap in
    /// their sequence.
    #[error("wal: file not found in {dir}: {why}")]
    FileNotFound { dir: PathBuf, why: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what} at offset {offset}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
}

/// What `ReadAll` returns.
#[derive(Debug, Default)]
pub struct WalContents {
    /// The metadata record's data (etcdserverpb.Metadata); empty if there was none.
    pub metadata: Vec<u8>,
    /// The last hard state record's data (raftpb.HardState); empty if there was none.
    pub hard_state: Vec<u8>,
    /// The entries after the snapshot, in index order, a later entry at an index replacing
    /// the tail from there (a new leader's log).
    pub entries: Vec<Entry>,
    /// Whether a snapshot record matched the snapshot asked for (etcd's
    /// `ErrSnapshotNotFound` when not).
    pub snapshot_found: bool,
}

/// A segment's name, `<seq>-<index>.wal` in hex (etcd's `parseWALName`: `%016x-%016x.wal`).
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_suffix(".wal")?;
    let hex = |s: &str| -> Option<(u64, usize)> {
        let n = s.bytes().take(16).take_while(u8::is_ascii_hexdigit).count();
        if n == 0 {
            return None;
        }
        Some((u64::from_str_radix(&s[..n], 16).ok()?, n))
    };
    let (seq, n) = hex(rest)?;
    let rest = rest[n..].strip_prefix('-')?;
    let (index, n) = hex(rest)?;
    // Sscanf stops once the format is matched; the name still ends in ".wal".
    if !rest[n..].is_empty() && !rest[n..].starts_with(".wal") {
        return None;
    }
    Some((seq, index))
}

/// The segments to read for a snapshot at `snap_index`: etcd's `selectWALFiles`.
fn select(dir: &Path, snap_index: u64) -> Result<Vec<PathBuf>, WalReadError> {
    let io = |source| WalReadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<(String, u64, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry
            .map_err(io)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some((seq, index)) = parse_name(&name) {
            names.push((name, seq, index));
        }
    }
    names.sort_unstable();
    let not_found = |why: String| WalReadError::FileNotFound {
        dir: dir.to_path_buf(),
        why,
    };
    if names.is_empty() {
        return Err(not_found("no *.wal segment".into()));
    }
    let Some(first) = names.iter().rposition(|(_, _, index)| *index <= snap_index) else {
        return Err(not_found(format!(
            "no segment reaches back to the snapshot at index {snap_index}"
        )));
    };
    let mut last_seq: u64 = 0;
    for (name, seq, _) in &names[first..] {
        // etcd's isValidSeq, which does not check what follows a sequence number 0.
        if last_seq != 0 && last_seq.wrapping_add(1) != *seq {
            return Err(not_found(format!(
                "{name} does not follow sequence number {last_seq:x}: a segment is missing"
            )));
        }
        last_seq = *seq;
    }
    Ok(names[first..]
        .iter()
        .map(|(name, _, _)| dir.join(name))
        .collect())
}

/// Why one segment's reading stopped.
enum Stop {
    /// Its records ended (end of file, or zeroed space): go on with the next segment.
    End,
    /// A record cut short or torn: the log ends here (io.ErrUnexpectedEOF in etcd).
    Short,
}

/// Reads `n` bytes, or as many as the file still has.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The WAL in `dir` from the snapshot at (`snap_index`, `snap_term`) on; (0, 0) for none.
pub fn read_all(dir: &Path, snap_index: u64, snap_term: u64) -> Result<WalContents, WalReadError> {
    let segments = select(dir, snap_index)?;
    let mut reader = Reader {
        out: WalContents::default(),
        snap_index,
        snap_term,
        crc: 0,
        have_metadata: false,
    };
    let last = segments.len() - 1;
    for (i, path) in segments.iter().enumerate() {
        match reader.segment(path, i == last)? {
            Stop::End => {}
            Stop::Short => break,
        }
    }
    Ok(reader.out)
}

struct Reader {
    out: WalContents,
    snap_index: u64,
    snap_term: u64,
    /// The CRC chained through every record so far.
    crc: u32,
    have_metadata: bool,
}

impl Reader {
    fn segment(&mut self, path: &Path, is_last: bool) -> Result<Stop, WalReadError> {
        let io = |source| WalReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = |offset: u64, what: String| WalReadError::Corrupt {
            path: path.to_path_buf(),
            offset,
            what,
        };
        let mut file = BufReader::new(File::open(path).map_err(io)?);
        let mut offset = 0u64;
        let mut body = Vec::new();
        loop {
            let mut frame = [0u8; FRAME_BYTES as usize];
            match read_up_to(&mut file, &mut frame).map_err(io)? {
                0 => return Ok(Stop::End),
                8 => {}
                _ => return Ok(Stop::Short),
            }
            let len_field = u64::from_le_bytes(frame);
            if len_field == 0 {
                return Ok(Stop::End);
            }
            let rec_bytes = len_field & !(0xff << 56);
            let pad_bytes = if len_field >> 63 == 1 {
                (len_field >> 56) & 0x7
            } else {
                0
            };
            if rec_bytes >= RECORD_BYTES_MAX - pad_bytes {
                return Err(corrupt(
                    offset,
                    format!(
                        "wal: max entry size limit exceeded (a record of {rec_bytes} bytes, \
                         etcd's limit is 10 MiB)"
                    ),
                ));
            }
            body.resize((rec_bytes + pad_bytes) as usize, 0);
            if read_up_to(&mut file, &mut body).map_err(io)? < body.len() {
                return Ok(Stop::Short);
            }
            let torn = is_last && is_torn(&body, offset + FRAME_BYTES);
            let record = match pb::decode_fields(&body[..rec_bytes as usize])
                .and_then(|fields| wal_record(&fields))
            {
                Ok(record) => record,
                Err(_) if torn => return Ok(Stop::Short),
                Err(e) => return Err(corrupt(offset, format!("not a WAL record: {e}"))),
            };
            if record.rec_type != CRC as i64 {
                let crc = crc32c::crc32c_append(self.crc, record.data);
                self.crc = crc;
                if record.crc != crc {
                    if torn {
                        return Ok(Stop::Short);
                    }
                    return Err(corrupt(offset, "wal: crc mismatch".into()));
                }
            }
            self.apply(&record).map_err(|what| corrupt(offset, what))?;
            offset += FRAME_BYTES + rec_bytes + pad_bytes;
        }
    }

    /// One record, as `ReadAll` takes it.
    fn apply(&mut self, record: &Record<'_>) -> Result<(), String> {
        match record.rec_type {
            t if t == ENTRY as i64 => {
                let e = Entry::decode(record.data).map_err(|e| format!("bad entry: {e}"))?;
                if e.index > self.snap_index {
                    let keep = e.index - self.snap_index - 1;
                    if keep > self.out.entries.len() as u64 {
                        return Err(format!(
                            "wal: slice bounds out of range (entry {} follows entry {})",
                            e.index,
                            self.snap_index + self.out.entries.len() as u64
                        ));
                    }
                    self.out.entries.truncate(keep as usize);
                    self.out.entries.push(e);
                }
            }
            t if t == STATE as i64 => {
                pb::decode_varints(record.data, "raftpb.HardState", &[1, 2, 3])
                    .map_err(|e| format!("bad hard state: {e}"))?;
                self.out.hard_state = record.data.to_vec();
            }
            t if t == METADATA as i64 => {
                if self.have_metadata && self.out.metadata != record.data {
                    return Err("wal: conflicting metadata found".into());
                }
                self.out.metadata = record.data.to_vec();
                self.have_metadata = true;
            }
            t if t == CRC as i64 => {
                if self.crc != 0 && record.crc != self.crc {
                    return Err(
                        "wal: crc mismatch (the segment does not continue the previous \
                                one's CRC)"
                            .into(),
                    );
                }
                self.crc = record.crc;
            }
            t if t == SNAPSHOT as i64 => {
                let (v, _) = pb::decode_varints(record.data, "walpb.Snapshot", &[1, 2])
                    .map_err(|e| format!("bad snapshot record: {e}"))?;
                if v[0] == self.snap_index {
                    if v[1] != self.snap_term {
                        return Err(format!(
                            "wal: snapshot mismatch (the record at index {} has term {}, the \
                             snapshot term {})",
                            v[0], v[1], self.snap_term
                        ));
                    }
                    self.out.snapshot_found = true;
                }
            }
            other => return Err(format!("unexpected block type {other}")),
        }
        Ok(())
    }
}

/// walpb.Record: type=1 (int64), crc=2 (uint32), data=3.
struct Record<'a> {
    rec_type: i64,
    crc: u32,
    data: &'a [u8],
}

fn wal_record<'a>(fields: &[pb::Field<'a>]) -> Result<Record<'a>, pb::DecodeError> {
    let mut r = Record {
        rec_type: 0,
        crc: 0,
        data: b"",
    };
    for f in fields {
        match (f.number, f.value) {
            (1, pb::Value::Varint(v)) => r.rec_type = v as i64,
            (2, pb::Value::Varint(v)) => r.crc = v as u32,
            (3, pb::Value::Bytes(d)) => r.data = d,
            (1..=3, _) => {
                return Err(pb::DecodeError(format!(
                    "wrong wireType for field {} of walpb.Record",
                    f.number
                )));
            }
            _ => {}
        }
    }
    Ok(r)
}

/// etcd's torn-write test: a sector-aligned piece of the record that is all zero.
fn is_torn(body: &[u8], file_offset: u64) -> bool {
    let mut offset = file_offset;
    let mut rest = body;
    while !rest.is_empty() {
        let n = ((SECTOR_BYTES - offset % SECTOR_BYTES) as usize).min(rest.len());
        if rest[..n].iter().all(|b| *b == 0) {
            return true;
        }
        offset += n as u64;
        rest = &rest[n..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::WalWriter;

    fn entry(term: u64, index: u64, data: &[u8]) -> Vec<u8> {
        pb::entry(0, term, index, Some(data))
    }

    fn write(dir: &Path, records: &[(u64, Vec<u8>)]) -> PathBuf {
        let mut w = WalWriter::create(&pb::metadata(7, 9));
        for (t, d) in records {
            w.record(*t, Some(d));
        }
        w.write_to(dir).unwrap();
        dir.join(format!("{:016x}-{:016x}.wal", 0, 0))
    }

    #[test]
    fn names_as_etcd_parses_them() {
        assert_eq!(
            parse_name("0000000000000001-000000000000000a.wal"),
            Some((1, 10))
        );
        assert_eq!(parse_name("1-a.wal"), Some((1, 10)));
        assert_eq!(parse_name("0000000000000001-000000000000000a.tmp"), None);
        assert_eq!(parse_name("00000000000000001-0.wal"), None);
        assert_eq!(parse_name("x-0.wal"), None);
    }

    #[test]
    fn reads_entries_state_and_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (ENTRY, entry(1, 1, b"a")),
                (ENTRY, entry(1, 2, b"b")),
                (ENTRY, entry(1, 3, b"c")),
                // A new leader overwrote index 2 and on.
                (ENTRY, entry(2, 2, b"B")),
                (STATE, pb::hard_state(2, 7, 2)),
            ],
        );
        let wal = read_all(dir.path(), 0, 0).unwrap();
        let got: Vec<_> = wal.entries.iter().map(|e| (e.term, e.index)).collect();
        assert_eq!(got, vec![(1, 1), (2, 2)]);
        assert_eq!(wal.hard_state, pb::hard_state(2, 7, 2));
        assert_eq!(wal.metadata, pb::metadata(7, 9));
        assert!(wal.snapshot_found);
        assert_eq!(wal.entries[1].encode(), entry(2, 2, b"B"));
    }

    #[test]
    fn from_a_snapshot_on() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (ENTRY, entry(1, 1, b"a")),
                (ENTRY, entry(1, 2, b"b")),
                (SNAPSHOT, pb::wal_snapshot(2, 1)),
                (ENTRY, entry(1, 3, b"c")),
            ],
        );
        let wal = read_all(dir.path(), 2, 1).unwrap();
        assert!(wal.snapshot_found);
        assert_eq!(wal.entries.len(), 1);
        let wal = read_all(dir.path(), 1, 1).unwrap();
        assert!(!wal.snapshot_found);
        let err = read_all(dir.path(), 2, 3).unwrap_err().to_string();
        assert!(err.contains("snapshot mismatch"), "{err}");
    }

    #[test]
    fn segments_must_reach_the_snapshot_and_follow_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_all(dir.path(), 0, 0).unwrap_err().to_string();
        assert!(err.contains("wal: file not found"), "{err}");
        write(dir.path(), &[(ENTRY, entry(1, 1, b"a"))]);
        std::fs::rename(
            dir.path().join("0000000000000000-0000000000000000.wal"),
            dir.path().join("0000000000000001-0000000000000005.wal"),
        )
        .unwrap();
        let err = read_all(dir.path(), 4, 1).unwrap_err().to_string();
        assert!(err.contains("reaches back"), "{err}");
        std::fs::copy(
            dir.path().join("0000000000000001-0000000000000005.wal"),
            dir.path().join("0000000000000003-0000000000000006.wal"),
        )
        .unwrap();
        let err = read_all(dir.path(), 5, 1).unwrap_err().to_string();
        assert!(err.contains("a segment is missing"), "{err}");
    }

    #[test]
    fn a_torn_tail_ends_the_log_and_damage_before_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[
                (ENTRY, entry(1, 1, &[1u8; 600])),
                (ENTRY, entry(1, 2, &[2u8; 600])),
            ],
        );
        let mut data = std::fs::read(&path).unwrap();
        let clean_len = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        // Without the preallocated zeroes: the records end where the file does.
        data.truncate(clean_len);
        let tail_sector = (clean_len - 1) / 512 * 512;
        data[tail_sector..clean_len].fill(0);
        std::fs::write(&path, &data).unwrap();
        let wal = read_all(dir.path(), 0, 0).unwrap();
        assert_eq!(wal.entries.len(), 1);

        data[100] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let err = read_all(dir.path(), 0, 0).unwrap_err().to_string();
        assert!(
            err.contains("0000000000000000-0000000000000000.wal"),
            "{err}"
        );
        assert!(err.contains("offset"), "{err}");
    }

    #[test]
    fn every_truncation_and_flip_reads_or_refuses_without_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[
                (ENTRY, entry(1, 1, b"x")),
                (STATE, pb::hard_state(1, 0, 1)),
                (ENTRY, entry(1, 2, &[5u8; 1000])),
                (SNAPSHOT, pb::wal_snapshot(1, 1)),
            ],
        );
        let mut data = std::fs::read(&path).unwrap();
        let used = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        data.truncate(used);
        for cut in 0..used {
            std::fs::write(&path, &data[..cut]).unwrap();
            let _ = read_all(dir.path(), 0, 0);
        }
        for at in 0..used {
            let mut flipped = data.clone();
            flipped[at] ^= 0x5a;
            std::fs::write(&path, &flipped).unwrap();
            let _ = read_all(dir.path(), 0, 0);
            let _ = read_all(dir.path(), 1, 1);
        }
    }
}
