//! A redb storage backend for power-loss runs (tests only): what redb writes stays in this
//! process's memory until redb syncs it, so killing the process loses every write that was
//! never synced, as a power cut loses the page cache. A plain file keeps such writes across a
//! process crash, which would hide a member that counts on an unsynced backend write.
//!
//! Writes are kept by page. A sync writes the held pages to the file, applies the length redb
//! last set, then fdatasyncs; only then are they released.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Mutex;

use redb::StorageBackend;
use redb::backends::FileBackend;

const PAGE: u64 = 4096;

#[derive(Debug)]
pub(crate) struct HeldWritesBackend {
    file: FileBackend,
    held: Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    /// The length redb sees.
    len: u64,
    /// The file's length as last synced (or as opened).
    file_len: u64,
    /// Bytes of the file at or past this offset are stale: redb shrank the storage below them
    /// since the last sync, so they read as zeros.
    stale_from: u64,
    /// Page number to its held contents.
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl HeldWritesBackend {
    pub(crate) fn new(file: File) -> Result<HeldWritesBackend, redb::DatabaseError> {
        let file_len = file.metadata()?.len();
        Ok(HeldWritesBackend {
            file: FileBackend::new(file)?,
            held: Mutex::new(Held {
                len: file_len,
                file_len,
                stale_from: u64::MAX,
                pages: BTreeMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file's bytes at `offset` as redb last synced them: zeros past its end or past a
    /// shrink.
    fn read_file(&self, held: &Held, offset: u64, out: &mut [u8]) -> io::Result<()> {
        out.fill(0);
        let readable_end = held.file_len.min(held.stale_from);
        if offset >= readable_end {
            return Ok(());
        }
        let n = usize::try_from(readable_end - offset).map_or(out.len(), |n| n.min(out.len()));
        self.file.read(offset, &mut out[..n])
    }
}

impl StorageBackend for HeldWritesBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let held = self.lock();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|end| *end <= held.len)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let mut at = offset;
        while at < end {
            let page = at / PAGE;
            let in_page = (at % PAGE) as usize;
            let n = ((PAGE - at % PAGE).min(end - at)) as usize;
            let dst = &mut out[(at - offset) as usize..][..n];
            match held.pages.get(&page) {
                Some(bytes) => dst.copy_from_slice(&bytes[in_page..in_page + n]),
                None => self.read_file(&held, at, dst)?,
            }
            at += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut held = self.lock();
        if len < held.len {
            held.stale_from = held.stale_from.min(len);
            let first_gone = len.div_ceil(PAGE);
            held.pages.split_off(&first_gone);
            // The part of the last page past the new end reads as zeros if it grows again.
            if !len.is_multiple_of(PAGE)
                && let Some(bytes) = held.pages.get_mut(&(len / PAGE))
            {
                bytes[(len % PAGE) as usize..].fill(0);
            }
        }
        held.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut held = self.lock();
        if held.stale_from < held.file_len {
            self.file.set_len(held.stale_from)?;
        }
        self.file.set_len(held.len)?;
        for (page, bytes) in &held.pages {
            let start = page * PAGE;
            let n = usize::try_from(held.len.saturating_sub(start))
                .map_or(bytes.len(), |n| n.min(bytes.len()));
            self.file.write(start, &bytes[..n])?;
        }
        self.file.sync_data()?;
        held.pages.clear();
        held.file_len = held.len;
        held.stale_from = u64::MAX;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut held = self.lock();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        held.len = held.len.max(end);
        let mut at = offset;
        while at < end {
            let page = at / PAGE;
            let in_page = (at % PAGE) as usize;
            let n = ((PAGE - at % PAGE).min(end - at)) as usize;
            if !held.pages.contains_key(&page) {
                let mut bytes = vec![0u8; PAGE as usize].into_boxed_slice();
                self.read_file(&held, page * PAGE, &mut bytes)?;
                held.pages.insert(page, bytes);
            }
            let src = &data[(at - offset) as usize..][..n];
            if let Some(bytes) = held.pages.get_mut(&page) {
                bytes[in_page..in_page + n].copy_from_slice(src);
            }
            at += n as u64;
        }
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &std::path::Path) -> HeldWritesBackend {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("db"))
            .unwrap();
        HeldWritesBackend::new(file).unwrap()
    }

    fn read(b: &HeldWritesBackend, offset: u64, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        b.read(offset, &mut out).unwrap();
        out
    }

    #[test]
    fn unsynced_writes_are_read_back_and_lost_without_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path());
        b.set_len(3 * PAGE).unwrap();
        // Across a page boundary.
        b.write(PAGE - 2, b"abcd").unwrap();
        assert_eq!(read(&b, PAGE - 3, 6), b"\0abcd\0");
        b.sync_data().unwrap();
        b.write(10, b"unsynced").unwrap();
        assert_eq!(read(&b, 10, 8), b"unsynced");
        drop(b);
        // The "crash": only what was synced is in the file.
        let on_disk = std::fs::read(dir.path().join("db")).unwrap();
        assert_eq!(on_disk.len() as u64, 3 * PAGE);
        assert_eq!(&on_disk[(PAGE - 2) as usize..][..4], b"abcd");
        assert_eq!(&on_disk[10..18], &[0u8; 8]);
        let b = backend(dir.path());
        assert_eq!(b.len().unwrap(), 3 * PAGE);
        assert_eq!(read(&b, PAGE - 2, 4), b"abcd");
    }

    #[test]
    fn a_shrink_then_growth_reads_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path());
        b.set_len(2 * PAGE).unwrap();
        b.write(PAGE + 5, b"old").unwrap();
        b.write(5, b"kept").unwrap();
        b.sync_data().unwrap();
        b.set_len(PAGE + 6).unwrap();
        b.set_len(2 * PAGE).unwrap();
        assert_eq!(read(&b, PAGE + 5, 3), b"o\0\0");
        b.sync_data().unwrap();
        drop(b);
        let on_disk = std::fs::read(dir.path().join("db")).unwrap();
        assert_eq!(&on_disk[(PAGE + 5) as usize..][..3], b"o\0\0");
        assert_eq!(&on_disk[5..9], b"kept");
    }

    #[test]
    fn reads_past_the_end_fail() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(dir.path());
        b.set_len(10).unwrap();
        let mut out = [0u8; 4];
        assert!(b.read(8, &mut out).is_err());
    }
}
