//! Reading etcd 3.4/3.5's WAL (`member/wal/<seq>-<index>.wal`), as etcd's `wal.ReadAll` does
//! on a restart: from the segment holding the snapshot's index on, every record checked
//! against the CRC-32C that chains through all of them, the entries after the snapshot (a
//! later entry at an index replaces the tail from there, as Raft overwrote it), the last hard
//! state, and the metadata that must agree in every segment.
//!
//! A record cut short or zeroed by a crash at the end of the last segment (etcd's torn write:
//! a 512-byte sector of the frame all zero) ends the log there, as etcd's `wal.Repair` does;
//! the same damage anywhere else, or a CRC mismatch that is not a torn write, is corruption and
//! is refused naming the file and offset.

use std::path::{Path, PathBuf};

use etcd_api::etcdfiles::{Entry, HardState, WalRecord, WalSnapshot};
use prost::Message;

use super::error::ConvertError;

const METADATA: i64 = 1;
const ENTRY: i64 = 2;
const STATE: i64 = 3;
const CRC: i64 = 4;
const SNAPSHOT: i64 = 5;

/// etcd refuses a record this large or larger (`maxWALEntrySizeLimit`).
const RECORD_BYTES_MAX: u64 = 10 * 1024 * 1024;
const SECTOR: u64 = 512;
const FRAME: usize = 8;

/// What the WAL says from a snapshot on.
#[derive(Debug, Default)]
pub struct EtcdWal {
    /// The encoded `etcdserverpb.Metadata` (member and cluster IDs).
    pub metadata: Vec<u8>,
    pub hard_state: HardState,
    /// Entries after the snapshot, in index order, without gaps.
    pub entries: Vec<Entry>,
    /// Where a torn tail was cut, if one was.
    pub torn_at: Option<(PathBuf, u64)>,
}

/// A segment file name, `{seq:016x}-{index:016x}.wal`.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    if seq.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

/// The segment files in `dir`, by sequence number.
pub fn segments(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>, ConvertError> {
    let read = std::fs::read_dir(dir).map_err(|e| ConvertError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| ConvertError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((seq, index)) = parse_name(&name) {
            out.push((seq, index, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// True if the first segment in `dir` begins as etcd's WAL does: an 8-byte frame length, then
/// a `walpb.Record` of type CRC (protobuf bytes `08 04`). Our own WAL starts with a 4-byte
/// length and a type byte of 1 where etcd's length has its zero upper bytes (the top one holds
/// the padding).
pub fn looks_like_etcd(dir: &Path) -> bool {
    let Ok(segs) = segments(dir) else {
        return false;
    };
    let Some((_, _, first)) = segs.first() else {
        return false;
    };
    let mut head = [0u8; 10];
    match std::fs::File::open(first) {
        Ok(mut f) => {
            use std::io::Read;
            f.read_exact(&mut head).is_ok() && head[4..7] == [0, 0, 0] && head[8..10] == [8, 4]
        }
        Err(_) => false,
    }
}

/// Reads the log from the snapshot at (`snap_index`, `snap_term`); (0, 0) reads it all.
pub fn read(dir: &Path, snap_index: u64, snap_term: u64) -> Result<EtcdWal, ConvertError> {
    let segs = segments(dir)?;
    if segs.is_empty() {
        return Err(ConvertError::refused(format!(
            "{}: no WAL segment (*.wal) to read",
            dir.display()
        )));
    }
    for pair in segs.windows(2) {
        if pair[1].0 != pair[0].0 + 1 {
            return Err(ConvertError::refused(format!(
                "{}: WAL segments are not in sequence ({} follows {}): a segment is missing",
                dir.display(),
                pair[1].2.display(),
                pair[0].2.display()
            )));
        }
    }
    // The last segment whose first index is at or below the snapshot holds it (etcd's
    // searchIndex); older ones are not needed.
    let Some(start) = segs.iter().rposition(|(_, index, _)| *index <= snap_index) else {
        return Err(ConvertError::refused(format!(
            "{}: no WAL segment reaches back to the snapshot at index {snap_index}; \
             the WAL was purged past it",
            dir.display()
        )));
    };
    let mut wal = EtcdWal::default();
    let mut crc: u32 = 0;
    let mut snapshot_found = snap_index == 0;
    let last = segs.len() - 1;
    for (i, (_, _, path)) in segs.iter().enumerate().skip(start) {
        let data = std::fs::read(path).map_err(|e| ConvertError::io(path, e))?;
        let mut off = 0usize;
        loop {
            if data.len() - off < FRAME {
                if data.len() > off && i == last && data[off..].iter().all(|b| *b == 0) {
                    break;
                }
                if data.len() == off {
                    break;
                }
                if i == last {
                    wal.torn_at = Some((path.clone(), off as u64));
                    break;
                }
                return Err(ConvertError::corrupt(
                    path,
                    off as u64,
                    "a frame length cut short",
                ));
            }
            let len_field = u64::from_le_bytes(data[off..off + FRAME].try_into().unwrap_or([0; 8]));
            if len_field == 0 {
                // Preallocated, never-written space: the end of this segment's records.
                break;
            }
            let rec_bytes = len_field & !(0xff << 56);
            let pad = if len_field >> 63 == 1 {
                (len_field >> 56) & 0x7
            } else {
                0
            };
            if rec_bytes + pad >= RECORD_BYTES_MAX {
                return Err(ConvertError::corrupt(
                    path,
                    off as u64,
                    &format!("a record of {rec_bytes} bytes, above etcd's limit of 10 MiB"),
                ));
            }
            let body_start = off + FRAME;
            let body_end = body_start + (rec_bytes + pad) as usize;
            if body_end > data.len() {
                if i == last {
                    wal.torn_at = Some((path.clone(), off as u64));
                    break;
                }
                return Err(ConvertError::corrupt(
                    path,
                    off as u64,
                    "a record cut short",
                ));
            }
            let body = &data[body_start..body_end];
            let torn = i == last && is_torn(body, body_start as u64);
            let rec = match WalRecord::decode(&body[..rec_bytes as usize]) {
                Ok(rec) => rec,
                Err(_) if torn => {
                    wal.torn_at = Some((path.clone(), off as u64));
                    break;
                }
                Err(e) => {
                    return Err(ConvertError::corrupt(
                        path,
                        off as u64,
                        &format!("not a WAL record: {e}"),
                    ));
                }
            };
            if rec.r#type == CRC {
                if crc != 0 && rec.crc != crc {
                    return Err(ConvertError::corrupt(
                        path,
                        off as u64,
                        "the segment's CRC does not continue the previous segment's",
                    ));
                }
                crc = rec.crc;
                off = body_end;
                continue;
            }
            let next = crc32c::crc32c_append(crc, &rec.data);
            if rec.crc != next {
                if torn {
                    wal.torn_at = Some((path.clone(), off as u64));
                    break;
                }
                return Err(ConvertError::corrupt(path, off as u64, "CRC mismatch"));
            }
            crc = next;
            apply_record(&mut wal, &rec, snap_index, snap_term, &mut snapshot_found)
                .map_err(|what| ConvertError::corrupt(path, off as u64, &what))?;
            off = body_end;
        }
        if wal.torn_at.is_some() {
            break;
        }
    }
    if !snapshot_found {
        return Err(ConvertError::refused(format!(
            "{}: the WAL has no snapshot record at index {snap_index} (term {snap_term}) to \
             match the newest .snap file",
            dir.display()
        )));
    }
    if wal.metadata.is_empty() {
        return Err(ConvertError::refused(format!(
            "{}: the WAL has no metadata record",
            dir.display()
        )));
    }
    Ok(wal)
}

fn apply_record(
    wal: &mut EtcdWal,
    rec: &WalRecord,
    snap_index: u64,
    snap_term: u64,
    snapshot_found: &mut bool,
) -> Result<(), String> {
    match rec.r#type {
        METADATA => {
            if !wal.metadata.is_empty() && wal.metadata != rec.data {
                return Err("metadata differs from an earlier segment's".into());
            }
            wal.metadata = rec.data.clone();
        }
        ENTRY => {
            let e = Entry::decode(rec.data.as_slice()).map_err(|e| format!("bad entry: {e}"))?;
            if e.index > snap_index {
                // Entries after the snapshot, a later one at an index replacing the tail.
                let keep = (e.index - snap_index - 1) as usize;
                if keep > wal.entries.len() {
                    return Err(format!(
                        "entry {} follows entry {}: the log has a gap",
                        e.index,
                        snap_index + wal.entries.len() as u64
                    ));
                }
                wal.entries.truncate(keep);
                wal.entries.push(e);
            }
        }
        STATE => {
            wal.hard_state =
                HardState::decode(rec.data.as_slice()).map_err(|e| format!("bad state: {e}"))?;
        }
        SNAPSHOT => {
            let s = WalSnapshot::decode(rec.data.as_slice())
                .map_err(|e| format!("bad snapshot record: {e}"))?;
            if s.index == snap_index {
                if s.term != snap_term {
                    return Err(format!(
                        "snapshot record at index {} has term {}, the .snap file {}",
                        s.index, s.term, snap_term
                    ));
                }
                *snapshot_found = true;
            }
        }
        other => return Err(format!("unknown record type {other}")),
    }
    Ok(())
}

/// etcd's torn-write test: a sector-aligned piece of the record that is all zero.
fn is_torn(body: &[u8], file_off: u64) -> bool {
    let mut off = file_off;
    let mut rest = body;
    while !rest.is_empty() {
        let n = ((SECTOR - off % SECTOR) as usize).min(rest.len());
        if rest[..n].iter().all(|b| *b == 0) {
            return true;
        }
        off += n as u64;
        rest = &rest[n..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcdutl::pb;
    use etcdutl::wal::{self as etcd_wal, WalWriter};

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
    fn reads_entries_state_and_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (etcd_wal::ENTRY, entry(1, 1, b"a")),
                (etcd_wal::ENTRY, entry(1, 2, b"b")),
                (etcd_wal::ENTRY, entry(1, 3, b"c")),
                // A new leader overwrote index 2 and on.
                (etcd_wal::ENTRY, entry(2, 2, b"B")),
                (etcd_wal::STATE, pb::hard_state(2, 7, 2)),
            ],
        );
        assert!(looks_like_etcd(dir.path()));
        let wal = read(dir.path(), 0, 0).unwrap();
        let got: Vec<_> = wal.entries.iter().map(|e| (e.term, e.index)).collect();
        assert_eq!(got, vec![(1, 1), (2, 2)]);
        assert_eq!(wal.hard_state.commit, 2);
        assert_eq!(wal.metadata, pb::metadata(7, 9));
        assert!(wal.torn_at.is_none());
    }

    #[test]
    fn a_snapshot_missing_from_the_wal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[(etcd_wal::SNAPSHOT, pb::wal_snapshot(5, 2))]);
        assert!(read(dir.path(), 5, 2).is_ok());
        let err = read(dir.path(), 6, 2).unwrap_err().to_string();
        assert!(err.contains("no snapshot record at index 6"), "{err}");
        let err = read(dir.path(), 5, 3).unwrap_err().to_string();
        assert!(err.contains("has term 2"), "{err}");
    }

    #[test]
    fn a_torn_tail_ends_the_log_and_damage_before_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[
                (etcd_wal::ENTRY, entry(1, 1, &[1u8; 600])),
                (etcd_wal::ENTRY, entry(1, 2, &[2u8; 600])),
            ],
        );
        let mut data = std::fs::read(&path).unwrap();
        let clean_len = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        // Zero the last sector-aligned piece of the second record: a torn write.
        let tail_sector = (clean_len - 1) / 512 * 512;
        data[tail_sector..clean_len].fill(0);
        std::fs::write(&path, &data).unwrap();
        let wal = read(dir.path(), 0, 0).unwrap();
        assert_eq!(wal.entries.len(), 1);
        assert!(wal.torn_at.is_some());

        // A flipped byte inside the first record (not torn) is corruption, named.
        let mut data = std::fs::read(&path).unwrap();
        data[100] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let err = read(dir.path(), 0, 0).unwrap_err().to_string();
        assert!(
            err.contains("0000000000000000-0000000000000000.wal"),
            "{err}"
        );
        assert!(err.contains("offset"), "{err}");
    }

    #[test]
    fn every_truncation_reads_or_refuses_without_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            &[
                (etcd_wal::ENTRY, entry(1, 1, b"x")),
                (etcd_wal::STATE, pb::hard_state(1, 0, 1)),
                (etcd_wal::ENTRY, entry(1, 2, &[5u8; 1000])),
            ],
        );
        let data = std::fs::read(&path).unwrap();
        let used = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        for cut in 0..used {
            std::fs::write(&path, &data[..cut]).unwrap();
            if let Ok(wal) = read(dir.path(), 0, 0) {
                assert!(wal.entries.len() <= 2);
            }
        }
    }
}
