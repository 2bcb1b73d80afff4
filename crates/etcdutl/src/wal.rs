//! etcd 3.4's WAL format, write side: `member/wal/<seq>-<index>.wal` segments of records, each
//! an 8-byte little-endian length (top byte: 0x80 | padding when padded to 8 bytes) followed
//! by a walpb.Record whose CRC-32C chains over every record's data since the file began.

use std::io::Write;
use std::path::Path;

use crate::pb;

pub const METADATA: u64 = 1;
pub const ENTRY: u64 = 2;
pub const STATE: u64 = 3;
pub const CRC: u64 = 4;
pub const SNAPSHOT: u64 = 5;

/// etcd preallocates each segment to 64 MB; the zeroed tail reads as the end of the log.
pub const SEGMENT_BYTES: u64 = 64 * 1000 * 1000;

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
        if let Some(d) = data {
            self.crc = crc32c::crc32c_append(self.crc, d);
        }
        let rec = pb::wal_record(rec_type, self.crc, data);
        let pad = (8 - rec.len() % 8) % 8;
        let mut len_field = rec.len() as u64;
        if pad != 0 {
            len_field |= (0x80 | pad as u64) << 56;
        }
        self.buf.extend_from_slice(&len_field.to_le_bytes());
        self.buf.extend_from_slice(&rec);
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    /// Writes the segment `0000000000000000-0000000000000000.wal` into `dir`.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{:016x}-{:016x}.wal", 0, 0));
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
