//! Segment files: their names, listing them, and creating a new one atomically.
//!
//! A segment is named `{seq:016x}-{first_index:016x}.wal`. `seq` rises by one per segment, so a
//! missing segment shows up as a hole; `first_index` is one past the last raft index written
//! before the segment was cut, so trimming can tell which segments hold only old entries without
//! reading them.
//!
//! A new segment is written as `<name>.tmp`, fsynced, renamed into place and the directory
//! fsynced: a crash leaves either no segment or a complete header, never a half-written one.
//! Leftover `.tmp` files are deleted on open.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::WalError;

const SEGMENT_SUFFIX: &str = ".wal";
const TEMP_SUFFIX: &str = ".tmp";
/// `{16 hex}-{16 hex}.wal`
const SEGMENT_NAME_LEN: usize = 16 + 1 + 16 + SEGMENT_SUFFIX.len();

/// One segment file of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
}

pub(crate) fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name; `None` for anything that is not exactly our format.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u64)> {
    if name.len() != SEGMENT_NAME_LEN || !name.is_ascii() {
        return None;
    }
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (seq, first_index) = stem.split_once('-')?;
    let hex = |s: &str| {
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            u64::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    Some((hex(seq)?, hex(first_index)?))
}

/// True if `dir` holds any `*.wal` file. A missing or unreadable directory holds none.
pub(crate) fn any_segment_files(dir: &Path) -> bool {
    let Ok(read) = fs::read_dir(dir) else {
        return false;
    };
    read.flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(SEGMENT_SUFFIX))
}

/// The segments in `dir`, sorted by sequence number. `*.wal` files whose names are not ours are
/// skipped with a warning, as etcd does, so a stray file cannot stop a member from starting.
pub(crate) fn list(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| WalError::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| WalError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        match parse_name(&name) {
            Some((seq, first_index)) => segments.push(Segment {
                seq,
                first_index,
                path: entry.path(),
            }),
            None => tracing::warn!(
                path = %entry.path().display(),
                "wal: ignoring file with a .wal suffix that is not a segment name; move it out of the WAL directory"
            ),
        }
    }
    segments.sort_by_key(|s| (s.seq, s.first_index));
    Ok(segments)
}

/// Checks that sequence numbers rise by exactly one, so no segment in the middle is missing.
pub(crate) fn check_sequence(segments: &[Segment]) -> Result<(), WalError> {
    for pair in segments.windows(2) {
        let expected = pair[0].seq.wrapping_add(1);
        if pair[1].seq != expected {
            return Err(WalError::SegmentSequence {
                path: pair[1].path.clone(),
                expected,
                found: pair[1].seq,
            });
        }
    }
    Ok(())
}

/// Deletes `*.tmp` files left by a crash while a segment was being created: they were never
/// renamed into place, so they are not part of the log.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<(), WalError> {
    for entry in fs::read_dir(dir).map_err(|e| WalError::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| WalError::io("read directory", dir, e))?;
        if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| WalError::io("remove", path, e))?;
        }
    }
    Ok(())
}

/// Creates segment `seq`/`first_index` in `dir` holding `header`, durably, and returns it with a
/// handle positioned at its end for appending. `dir_handle` is `dir` opened, for the fsync.
pub(crate) fn create(
    dir: &Path,
    dir_handle: &File,
    seq: u64,
    first_index: u64,
    header: &[u8],
) -> Result<(Segment, File), WalError> {
    let name = file_name(seq, first_index);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    // Writes continue from the current position, which stays at the end: nothing seeks.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| WalError::io("create", &temp, e))?;
    file.write_all(header)
        .map_err(|e| WalError::io("write", &temp, e))?;
    // sync_all, not sync_data: the file's size and existence are metadata we need durable.
    file.sync_all()
        .map_err(|e| WalError::io("fsync", &temp, e))?;
    fs::rename(&temp, &path).map_err(|e| WalError::io("rename", &temp, e))?;
    sync_dir(dir, dir_handle)?;
    let segment = Segment {
        seq,
        first_index,
        path,
    };
    Ok((segment, file))
}

/// Makes creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path, dir_handle: &File) -> Result<(), WalError> {
    dir_handle
        .sync_all()
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_sequence() {
        let name = file_name(0x1a, 0xff00);
        assert_eq!(name, "000000000000001a-000000000000ff00.wal");
        assert_eq!(parse_name(&name), Some((0x1a, 0xff00)));
        assert_eq!(
            parse_name(&file_name(u64::MAX, u64::MAX)),
            Some((u64::MAX, u64::MAX))
        );
        assert!(file_name(9, 100) < file_name(10, 1));
    }

    #[test]
    fn foreign_names_are_rejected() {
        for bad in [
            "",
            "x.wal",
            "0000000000000000-0000000000000000.wal.tmp",
            "0000000000000000_0000000000000000.wal",
            "000000000000000g-0000000000000000.wal",
            "+000000000000000-0000000000000000.wal",
            "00000000000000000-000000000000000.wal",
            "0000000000000000-0000000000000000.snap",
        ] {
            assert_eq!(parse_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sequence_holes_are_reported() {
        let seg = |seq| Segment {
            seq,
            first_index: 0,
            path: PathBuf::from(file_name(seq, 0)),
        };
        assert!(check_sequence(&[seg(3), seg(4), seg(5)]).is_ok());
        let err = check_sequence(&[seg(3), seg(5)]).unwrap_err();
        assert!(matches!(
            err,
            WalError::SegmentSequence {
                expected: 4,
                found: 5,
                ..
            }
        ));
    }
}
