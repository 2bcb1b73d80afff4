//! etcd 3.4's WAL format, write side: `member/wal/<seq>-<index>.wal` segments of records, each
//! an 8-byte little-endian length (top byte: 0x80 | padding when padded to 8 bytes) followed
//! by a walpb.Record whose CRC-32C chains over every record's data since the log began.
//!
//! [`WalWriter`] builds a small one-segment log in memory (a restored member's); [`WalFiles`]
//! streams a log of any size to segment files as etcd's `wal.Create`, `Save` and
//! `SaveSnapshot` do, cutting a new segment when one passes 64 MB.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::pb;

pub const METADATA: u64 = 1;
pub const ENTRY: u64 = 2;
pub const STATE: u64 = 3;
pub const CRC: u64 = 4;
pub const SNAPSHOT: u64 = 5;

/// etcd preallocates each segment to 64 MB; the zeroed tail reads as the end of the log.
pub const SEGMENT_BYTES: u64 = 64 * 1000 * 1000;

/// Appends one framed record to `out`: its CRC chains `data` onto `crc` (a CRC record carries
/// `crc` itself). Returns the CRC after it.
fn frame(out: &mut Vec<u8>, crc: u32, rec_type: u64, data: Option<&[u8]>) -> u32 {
    let crc = match data {
        Some(d) => crc32c::crc32c_append(crc, d),
        None => crc,
    };
    let rec = pb::wal_record(rec_type, crc, data);
    let pad = (8 - rec.len() % 8) % 8;
    let mut len_field = rec.len() as u64;
    if pad != 0 {
        len_field |= (0x80 | pad as u64) << 56;
    }
    out.extend_from_slice(&len_field.to_le_bytes());
    out.extend_from_slice(&rec);
    out.extend(std::iter::repeat_n(0u8, pad));
    crc
}

/// A segment's name, `<seq>-<index>.wal` in hex.
pub fn segment_name(seq: u64, index: u64) -> String {
    format!("{seq:016x}-{index:016x}.wal")
}

pub struct WalWriter {
    buf: Vec<u8>,
    crc: u32,
}

impl WalWriter {
    /// A new log starting with the CRC record, the metadata and an empty snapshot marker,
    /// as `wal.Create` writes them.
    pub fn create(metadata: &[u8]) -> WalWriter {
        let mut w = WalWriter {
            buf: Vec::new(),
            crc: 0,
        };
        w.record(CRC, None);
        w.record(METADATA, Some(metadata));
        w.record(SNAPSHOT, Some(&pb::wal_snapshot(0, 0)));
        w
    }

    pub fn record(&mut self, rec_type: u64, data: Option<&[u8]>) {
        self.crc = frame(&mut self.buf, self.crc, rec_type, data);
    }

    /// The records so far, as the segment file starts.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Writes the segment `0000000000000000-0000000000000000.wal` into `dir`.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(segment_name(0, 0));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(&self.buf)?;
        f.set_len(SEGMENT_BYTES.max(self.buf.len() as u64))?;
        f.sync_all()?;
        Ok(())
    }
}

/// A new log written to files: etcd's `wal.Create` (a CRC record, the metadata, an empty
/// snapshot record), then `save` and `save_snapshot` calls, then `finish`.
///
/// Everything is written in `<dir>.tmp` (as etcd's Create starts) and renamed to `dir` only by
/// `finish`, once every segment is synced: a crash leaves no half log where a member would
/// start from it. Segments are 0600 in a 0700 directory, as etcd's.
pub struct WalFiles {
    dir: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    /// The segments' names so far; the last is being written, with this sequence number
    /// and bytes so far.
    names: Vec<String>,
    seq: u64,
    offset: u64,
    crc: u32,
    metadata: Vec<u8>,
    /// The last hard state saved (carried into each new segment, as etcd's cut does).
    state: Option<Vec<u8>>,
    /// The last entry index saved (names the next segment).
    last_index: u64,
    /// When a segment is cut (etcd's 64 MB; smaller in tests).
    segment_bytes: u64,
    buf: Vec<u8>,
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn create_segment(path: &Path) -> std::io::Result<BufWriter<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

impl WalFiles {
    /// Starts a log for `dir`, which must hold no WAL (the caller checks; a leftover
    /// `<dir>.tmp` of an earlier attempt is removed, as etcd does).
    pub fn create(dir: &Path, metadata: &[u8]) -> std::io::Result<WalFiles> {
        WalFiles::create_with_segment_bytes(dir, metadata, SEGMENT_BYTES)
    }

    fn create_with_segment_bytes(
        dir: &Path,
        metadata: &[u8],
        segment_bytes: u64,
    ) -> std::io::Result<WalFiles> {
        let mut tmp = dir.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        match std::fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        create_private_dir(&tmp)?;
        let name = segment_name(0, 0);
        let mut w = WalFiles {
            dir: dir.to_path_buf(),
            out: create_segment(&tmp.join(&name))?,
            tmp,
            names: vec![name],
            seq: 0,
            offset: 0,
            crc: 0,
            metadata: metadata.to_vec(),
            state: None,
            last_index: 0,
            segment_bytes,
            buf: Vec::new(),
        };
        w.record(CRC, None)?;
        w.record(METADATA, Some(metadata))?;
        w.record(SNAPSHOT, Some(&pb::wal_snapshot(0, 0)))?;
        Ok(w)
    }

    fn record(&mut self, rec_type: u64, data: Option<&[u8]>) -> std::io::Result<()> {
        self.buf.clear();
        self.crc = frame(&mut self.buf, self.crc, rec_type, data);
        self.out.write_all(&self.buf)?;
        self.offset += self.buf.len() as u64;
        Ok(())
    }

    /// etcd's `Save`: the entries (index, encoded raftpb.Entry), then the hard state unless
    /// it is empty (`None`); a new segment when this one has passed 64 MB.
    pub fn save(
        &mut self,
        state: Option<&[u8]>,
        entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> std::io::Result<()> {
        let mut any = false;
        for (index, entry) in entries {
            self.record(ENTRY, Some(&entry))?;
            self.last_index = index;
            any = true;
        }
        if !any && state.is_none() {
            return Ok(());
        }
        if let Some(state) = state {
            self.record(STATE, Some(state))?;
            self.state = Some(state.to_vec());
        }
        if self.offset >= self.segment_bytes {
            self.cut()?;
        }
        Ok(())
    }

    /// etcd's `SaveSnapshot`: a snapshot record.
    pub fn save_snapshot(&mut self, index: u64, term: u64) -> std::io::Result<()> {
        self.record(SNAPSHOT, Some(&pb::wal_snapshot(index, term)))?;
        self.last_index = self.last_index.max(index);
        Ok(())
    }

    /// etcd's `cut`: this segment ends where its records do; the next one, named after the
    /// next index, starts with the CRC so far, the metadata and the last hard state.
    fn cut(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        self.seq += 1;
        let name = segment_name(self.seq, self.last_index.wrapping_add(1));
        self.out = create_segment(&self.tmp.join(&name))?;
        self.names.push(name);
        self.offset = 0;
        self.record(CRC, None)?;
        let metadata = std::mem::take(&mut self.metadata);
        self.record(METADATA, Some(&metadata))?;
        self.metadata = metadata;
        if let Some(state) = self.state.take() {
            self.record(STATE, Some(&state))?;
            self.state = Some(state);
        }
        Ok(())
    }

    /// Preallocates the last segment to 64 MB as etcd does, syncs, and moves the log into
    /// place. Returns the segment files, in order.
    pub fn finish(mut self) -> std::io::Result<Vec<PathBuf>> {
        self.out.flush()?;
        let file = self.out.get_ref();
        file.set_len(self.segment_bytes.max(self.offset))?;
        file.sync_all()?;
        File::open(&self.tmp)?.sync_all()?;
        // etcd removes whatever is at `dir`; only an empty directory is (the caller refused
        // one holding anything).
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&self.tmp, &self.dir)?;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)?.sync_all()?;
        }
        Ok(self.names.iter().map(|n| self.dir.join(n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal_read;

    #[test]
    fn segments_are_cut_as_etcds() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("member").join("wal");
        let metadata = pb::metadata(1, 2);
        let mut w = WalFiles::create_with_segment_bytes(&wal_dir, &metadata, 1024).unwrap();
        let entry = |index: u64| pb::entry(0, 3, index, Some(&[index as u8; 100]));
        // One save passes the segment size: all its entries stay in the first segment.
        w.save(
            Some(&pb::hard_state(3, 1, 20)),
            (1..=20).map(|i| (i, entry(i))),
        )
        .unwrap();
        w.save(None, (21..=22).map(|i| (i, entry(i)))).unwrap();
        w.save_snapshot(0, 0).unwrap();
        let files = w.finish().unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [segment_name(0, 0), segment_name(1, 21)],
            "the next segment is named after the next index"
        );
        assert!(!dir.path().join("member").join("wal.tmp").exists());
        let first = std::fs::metadata(&files[0]).unwrap().len();
        assert!(
            first > 20 * 100,
            "the first segment ends where its records do"
        );
        assert_eq!(std::fs::metadata(&files[1]).unwrap().len(), 1024);

        // The log reads back whole: the CRC chains across the cut, the second segment
        // repeats the metadata and the hard state.
        let read = wal_read::read_all(&wal_dir, 0, 0).unwrap();
        assert_eq!(read.entries.len(), 22);
        assert_eq!(read.entries[21].encode(), entry(22));
        assert_eq!(read.metadata, metadata);
        assert_eq!(read.hard_state, pb::hard_state(3, 1, 20));
        let second = std::fs::read(&files[1]).unwrap();
        let used = &second[..second.iter().rposition(|b| *b != 0).unwrap() + 1];
        let state = pb::hard_state(3, 1, 20);
        assert!(used.windows(state.len()).any(|w| w == state));
        assert!(used.windows(metadata.len()).any(|w| w == metadata));

        // A log is never written over another.
        assert!(
            WalFiles::create(&wal_dir, &metadata)
                .unwrap()
                .finish()
                .is_err()
        );
    }
}
