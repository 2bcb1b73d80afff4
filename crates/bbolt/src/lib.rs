//! A minimal reader and writer of bbolt files (etcd 3.4's backend, `member/snap/db`).
//!
//! Layout: pages of `page_size` bytes, each starting with a 16-byte header (id u64, flags u16,
//! count u16, overflow u32). Pages 0 and 1 are meta pages (magic, version, page size, root
//! bucket, freelist page, high-water page id, txid, FNV-1a checksum); the newer valid one
//! wins. Buckets are B+trees of branch (0x01) and leaf (0x02) pages; a leaf element with flag
//! 0x01 is a sub-bucket whose value is `{root u64, sequence u64}`, followed by an inline leaf
//! page when `root` is 0. Everything read from the file is bounds-checked: no panic on any
//! content.
//!
//! The writer lays out a fresh, compact file (what `bbolt compact` or a defrag produce),
//! streaming: see [`FileWriter`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom, Write};

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
const BUCKET_LEAF_FLAG: u32 = 0x01;
const ELEM: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid database")]
    Invalid,
    #[error("version mismatch")]
    Version,
    #[error("checksum error")]
    Checksum,
    #[error("{0}")]
    Corrupt(String),
}

/// One bucket's keys and values (etcd has no nested buckets under its buckets).
pub type Bucket = BTreeMap<Vec<u8>, Vec<u8>>;

/// (key, value, is a sub-bucket) of one tree, in key order.
type Items = Vec<(Vec<u8>, Vec<u8>, bool)>;

/// The top-level buckets and the ids of the pages their trees use.
type Contents = (Vec<(Vec<u8>, Bucket)>, Vec<u64>);

#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub freelist: u64,
    pub pgid: u64,
    pub txid: u64,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn fnv64a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn read_meta(page: &[u8]) -> Result<Meta, BoltError> {
    let m = page
        .get(PAGE_HEADER..PAGE_HEADER + 64)
        .ok_or(BoltError::Invalid)?;
    let magic = u32_at(m, 0).ok_or(BoltError::Invalid)?;
    if magic != MAGIC {
        return Err(BoltError::Invalid);
    }
    if u32_at(m, 4) != Some(VERSION) {
        return Err(BoltError::Version);
    }
    let checksum = u64_at(m, 56).ok_or(BoltError::Invalid)?;
    if checksum != fnv64a(&m[..56]) {
        return Err(BoltError::Checksum);
    }
    Ok(Meta {
        page_size: u32_at(m, 8).ok_or(BoltError::Invalid)?,
        flags: u32_at(m, 12).ok_or(BoltError::Invalid)?,
        root: u64_at(m, 16).ok_or(BoltError::Invalid)?,
        freelist: u64_at(m, 32).ok_or(BoltError::Invalid)?,
        pgid: u64_at(m, 40).ok_or(BoltError::Invalid)?,
        txid: u64_at(m, 48).ok_or(BoltError::Invalid)?,
    })
}

/// At most this many problems are listed by [`Db::check`].
pub const CHECK_ERRORS_MAX: usize = 100;

/// An opened file, read fully into memory.
pub struct Db {
    data: Vec<u8>,
    pub meta: Meta,
}

impl Db {
    pub fn open(path: &std::path::Path) -> Result<Db, BoltError> {
        Db::from_bytes(std::fs::read(path)?)
    }

    pub fn from_bytes(data: Vec<u8>) -> Result<Db, BoltError> {
        // The page size is in meta 0; fall back to 4096 to find meta 1 if meta 0 is bad.
        let m0 = read_meta(&data);
        let ps = match &m0 {
            Ok(m) => m.page_size as usize,
            Err(_) => 4096,
        };
        if !(512..=(1 << 20)).contains(&ps) {
            return Err(BoltError::Invalid);
        }
        let m1 = data
            .get(ps..)
            .map(read_meta)
            .unwrap_or(Err(BoltError::Invalid));
        let meta = match (m0, m1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(e), Err(_)) => return Err(e),
        };
        // Meta 1 was read at meta 0's page size, or at 4096 when meta 0 was bad: its own may
        // be anything.
        if !(512..=(1 << 20)).contains(&meta.page_size) || !meta.page_size.is_power_of_two() {
            return Err(BoltError::Invalid);
        }
        Ok(Db { data, meta })
    }

    /// The size bbolt reports for a read transaction: high-water page id times page size.
    pub fn size(&self) -> u64 {
        self.meta
            .pgid
            .saturating_mul(u64::from(self.meta.page_size))
    }

    fn page(&self, id: u64) -> Result<&[u8], BoltError> {
        let ps = self.meta.page_size as usize;
        let start = (id as usize).checked_mul(ps).ok_or(BoltError::Invalid)?;
        let hdr = self
            .data
            .get(start..start.saturating_add(PAGE_HEADER))
            .ok_or_else(|| BoltError::Corrupt(format!("page {id}: out of bounds")))?;
        let overflow = u32_at(hdr, 12).unwrap_or(0) as usize;
        let len = (overflow + 1).checked_mul(ps).ok_or(BoltError::Invalid)?;
        Ok(self
            .data
            .get(start..start.saturating_add(len))
            .unwrap_or(&self.data[start..]))
    }

    /// Every (key, value, is_bucket) of the tree rooted at `root` (a page id, or an inline
    /// page given as bytes), in key order.
    fn walk(
        &self,
        node: &[u8],
        out: &mut Vec<(Vec<u8>, Vec<u8>, bool)>,
        pages: &mut Vec<u64>,
        depth: usize,
    ) -> Result<(), BoltError> {
        if depth > 64 {
            return Err(BoltError::Corrupt("tree too deep".into()));
        }
        let flags = u16_at(node, 8).ok_or(BoltError::Invalid)?;
        let count = u16_at(node, 10).ok_or(BoltError::Invalid)? as usize;
        for i in 0..count {
            let e = PAGE_HEADER + i * ELEM;
            if flags & LEAF != 0 {
                let eflags = u32_at(node, e).ok_or(BoltError::Invalid)?;
                let pos = u32_at(node, e + 4).ok_or(BoltError::Invalid)? as usize;
                let ks = u32_at(node, e + 8).ok_or(BoltError::Invalid)? as usize;
                let vs = u32_at(node, e + 12).ok_or(BoltError::Invalid)? as usize;
                let k0 = e + pos;
                let key = node.get(k0..k0 + ks).ok_or(BoltError::Invalid)?;
                let val = node.get(k0 + ks..k0 + ks + vs).ok_or(BoltError::Invalid)?;
                out.push((key.to_vec(), val.to_vec(), eflags & BUCKET_LEAF_FLAG != 0));
            } else if flags & BRANCH != 0 {
                let child = u64_at(node, e + 8).ok_or(BoltError::Invalid)?;
                if child >= self.meta.pgid {
                    return Err(BoltError::Corrupt(format!(
                        "page {child}: out of bounds: {}",
                        self.meta.pgid
                    )));
                }
                pages.push(child);
                let p = self.page(child)?;
                self.walk(p, out, pages, depth + 1)?;
            } else {
                return Err(BoltError::Corrupt(format!("invalid page type: {flags}")));
            }
        }
        Ok(())
    }

    fn tree(
        &self,
        root: u64,
        inline: Option<&[u8]>,
        pages: &mut Vec<u64>,
    ) -> Result<Items, BoltError> {
        let mut out = Vec::new();
        match inline {
            Some(p) => self.walk(p, &mut out, pages, 0)?,
            None => {
                if root >= self.meta.pgid {
                    return Err(BoltError::Corrupt(format!(
                        "page {root}: out of bounds: {}",
                        self.meta.pgid
                    )));
                }
                pages.push(root);
                let p = self.page(root)?;
                self.walk(p, &mut out, pages, 0)?;
            }
        }
        Ok(out)
    }

    /// The top-level buckets with their contents, in name order, plus the ids of every page
    /// the trees use.
    pub fn read_all(&self) -> Result<Contents, BoltError> {
        let mut pages = Vec::new();
        let top = self.tree(self.meta.root, None, &mut pages)?;
        let mut buckets = Vec::new();
        for (name, val, is_bucket) in top {
            if !is_bucket {
                continue;
            }
            let root = u64_at(&val, 0).ok_or(BoltError::Invalid)?;
            let items = if root == 0 {
                let inline = val.get(16..).ok_or(BoltError::Invalid)?;
                self.tree(0, Some(inline), &mut pages)?
            } else {
                self.tree(root, None, &mut pages)?
            };
            let mut b = Bucket::new();
            for (k, v, sub) in items {
                b.insert(k, if sub { Vec::new() } else { v });
            }
            buckets.push((name, b));
        }
        Ok((buckets, pages))
    }

    /// A subset of bbolt's `tx.Check()`: page references in bounds, none used twice, every
    /// page either reachable or free. Work is bounded by the file, not by what a damaged
    /// header claims (an overflow count or high-water mark of billions), and at most
    /// [`CHECK_ERRORS_MAX`] problems are listed.
    pub fn check(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let pages = match self.read_all() {
            Ok((_, p)) => p,
            Err(e) => return vec![e.to_string()],
        };
        let ps = self.meta.page_size as usize;
        let file_pages = (self.data.len() / ps) as u64;
        // Pages past the high-water mark are not in use; nor are pages past the file's end.
        let limit = self.meta.pgid.min(file_pages);
        let mut used: BTreeSet<u64> = [0u64, 1].into_iter().collect();
        let mut mark = |id: u64, n: u64, errs: &mut Vec<String>| {
            if n == 0 {
                return;
            }
            let end = id.saturating_add(n);
            if end > limit {
                errs.push(format!(
                    "page {id}: {n} page(s) from it run past page {limit}, the last in use"
                ));
            }
            for i in id..end.min(limit) {
                if !used.insert(i) {
                    errs.push(format!("page {i}: multiple references"));
                }
            }
        };
        for id in pages {
            let Ok(p) = self.page(id) else {
                errs.push(format!("page {id}: out of bounds: {}", self.meta.pgid));
                continue;
            };
            let overflow = u32_at(p, 12).unwrap_or(0) as u64;
            let flags = u16_at(p, 8).unwrap_or(0);
            if flags & (BRANCH | LEAF) == 0 {
                errs.push(format!("page {id}: invalid type: unknown<{flags:02x}>"));
            }
            mark(id, overflow + 1, &mut errs);
        }
        match self.freelist_ids() {
            Ok((fl_pages, ids)) => {
                mark(self.meta.freelist, fl_pages, &mut errs);
                for id in ids {
                    mark(id, 1, &mut errs);
                }
            }
            Err(e) => errs.push(e.to_string()),
        }
        // Without a synced freelist (etcd's NoFreelistSync), bbolt treats every unreached
        // page as free.
        let synced = self.meta.freelist != u64::MAX && self.meta.freelist < self.meta.pgid;
        if synced {
            errs.extend(
                (0..limit)
                    .filter(|i| !used.contains(i))
                    .take(CHECK_ERRORS_MAX)
                    .map(|i| format!("page {i}: unreachable unfreed")),
            );
        }
        if self.data.len() < (self.meta.pgid as usize).saturating_mul(ps) && errs.is_empty() {
            errs.push(format!(
                "file size {} is smaller than {} pages",
                self.data.len(),
                self.meta.pgid
            ));
        }
        if errs.len() > CHECK_ERRORS_MAX {
            let more = errs.len() - CHECK_ERRORS_MAX;
            errs.truncate(CHECK_ERRORS_MAX);
            errs.push(format!("and {more} more problems"));
        }
        errs
    }

    /// (pages the freelist occupies, free page ids).
    fn freelist_ids(&self) -> Result<(u64, Vec<u64>), BoltError> {
        if self.meta.freelist == u64::MAX || self.meta.freelist >= self.meta.pgid {
            return Ok((0, Vec::new()));
        }
        let p = self.page(self.meta.freelist)?;
        let overflow = u32_at(p, 12).unwrap_or(0) as u64;
        if u16_at(p, 8).unwrap_or(0) & FREELIST == 0 {
            return Err(BoltError::Corrupt(format!(
                "page {}: invalid freelist page",
                self.meta.freelist
            )));
        }
        let mut count = u16_at(p, 10).unwrap_or(0) as usize;
        let mut off = PAGE_HEADER;
        if count == 0xFFFF {
            count = u64_at(p, off).ok_or(BoltError::Invalid)? as usize;
            off += 8;
        }
        let mut ids = Vec::with_capacity(count.min(1 << 20));
        for i in 0..count {
            ids.push(u64_at(p, off + i * 8).ok_or(BoltError::Invalid)?);
        }
        Ok((overflow + 1, ids))
    }
}

/// Writes a fresh bbolt file holding `buckets` (top-level buckets only), in memory.
pub fn write(buckets: &[(Vec<u8>, Bucket)], page_size: usize) -> Vec<u8> {
    let mut sorted: Vec<&(Vec<u8>, Bucket)> = buckets.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let write_all = || -> std::io::Result<Vec<u8>> {
        let mut w = FileWriter::new(std::io::Cursor::new(Vec::new()), page_size)?;
        for (name, bucket) in sorted {
            let mut b = w.bucket(name)?;
            for (k, v) in bucket {
                b.put(k, v)?;
            }
            b.finish()?;
        }
        Ok(w.finish()?.into_inner())
    };
    // Writing to memory in key order cannot fail.
    write_all().unwrap_or_default()
}

/// Writes a bbolt file page by page, bucket by bucket, keys in order, holding in memory only
/// the page being filled and one entry per page of the tree levels above it: a backend of
/// any size streams through in about `page_size` bytes plus its index.
///
/// Pages are numbered in the order they are written, from 2 on; the two meta pages (0 and 1)
/// are written last, so a file cut short by a crash has no valid meta and is refused whole.
pub struct FileWriter<W: Write + Seek> {
    out: W,
    page_size: usize,
    next: u64,
    /// The top-level buckets written so far: (name, bucket header, flags).
    top: Vec<(Vec<u8>, Vec<u8>, u32)>,
}

/// One top-level bucket being written; keys must come in strictly ascending order.
pub struct BucketWriter<'a, W: Write + Seek> {
    file: &'a mut FileWriter<W>,
    name: Vec<u8>,
    tree: TreeBuilder,
}

impl<W: Write + Seek> FileWriter<W> {
    pub fn new(out: W, page_size: usize) -> std::io::Result<FileWriter<W>> {
        if !(1024..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bbolt page size {page_size} is not a power of two in 1 KiB..64 KiB"),
            ));
        }
        Ok(FileWriter {
            out,
            page_size,
            next: 2,
            top: Vec::new(),
        })
    }

    /// Starts the next top-level bucket; names must come in strictly ascending order.
    pub fn bucket(&mut self, name: &[u8]) -> std::io::Result<BucketWriter<'_, W>> {
        if self
            .top
            .last()
            .is_some_and(|(last, _, _)| last.as_slice() >= name)
        {
            return Err(out_of_order("bucket", name));
        }
        Ok(BucketWriter {
            file: self,
            name: name.to_vec(),
            tree: TreeBuilder::default(),
        })
    }

    /// Writes the bucket directory, the freelist and the meta pages; returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        let mut directory = TreeBuilder::default();
        for (name, header, flags) in std::mem::take(&mut self.top) {
            directory.add(&mut self, name, header, flags)?;
        }
        let root = directory.finish(&mut self)?;
        let freelist = self.alloc(1);
        let mut page = vec![0u8; self.page_size];
        page[..8].copy_from_slice(&freelist.to_le_bytes());
        page[8..10].copy_from_slice(&FREELIST.to_le_bytes());
        self.write_page(freelist, &page)?;
        let high_water = self.next;
        for id in 0..2u64 {
            let mut page = vec![0u8; self.page_size];
            page[..8].copy_from_slice(&id.to_le_bytes());
            page[8..10].copy_from_slice(&META.to_le_bytes());
            let m = &mut page[PAGE_HEADER..PAGE_HEADER + 64];
            m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
            m[4..8].copy_from_slice(&VERSION.to_le_bytes());
            m[8..12].copy_from_slice(&(self.page_size as u32).to_le_bytes());
            m[16..24].copy_from_slice(&root.to_le_bytes());
            m[32..40].copy_from_slice(&freelist.to_le_bytes());
            m[40..48].copy_from_slice(&high_water.to_le_bytes());
            m[48..56].copy_from_slice(&id.to_le_bytes());
            let sum = fnv64a(&m[..56]);
            m[56..64].copy_from_slice(&sum.to_le_bytes());
            self.write_page(id, &page)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn alloc(&mut self, pages: u64) -> u64 {
        let id = self.next;
        self.next += pages;
        id
    }

    fn write_page(&mut self, id: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.out.seek(SeekFrom::Start(id * self.page_size as u64))?;
        self.out.write_all(bytes)
    }

    /// Writes one node (spanning as many pages as it needs); returns its page id.
    fn node(
        &mut self,
        leaf: bool,
        items: &[(Vec<u8>, Vec<u8>, u32)],
        children: &[u64],
    ) -> std::io::Result<u64> {
        let n = items.len();
        let mut body = Vec::new();
        let mut elems = vec![0u8; n * ELEM];
        let data_start = PAGE_HEADER + n * ELEM;
        for (i, (k, v, flags)) in items.iter().enumerate() {
            let e = i * ELEM;
            let pos = (data_start + body.len() - (PAGE_HEADER + e)) as u32;
            if leaf {
                elems[e..e + 4].copy_from_slice(&flags.to_le_bytes());
                elems[e + 4..e + 8].copy_from_slice(&pos.to_le_bytes());
                elems[e + 8..e + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
                elems[e + 12..e + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
                body.extend_from_slice(k);
                body.extend_from_slice(v);
            } else {
                elems[e..e + 4].copy_from_slice(&pos.to_le_bytes());
                elems[e + 4..e + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
                elems[e + 8..e + 16].copy_from_slice(&children[i].to_le_bytes());
                body.extend_from_slice(k);
            }
        }
        let total = data_start + body.len();
        let pages = total.div_ceil(self.page_size).max(1) as u64;
        let id = self.alloc(pages);
        let mut p = vec![0u8; pages as usize * self.page_size];
        p[..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&(if leaf { LEAF } else { BRANCH }).to_le_bytes());
        p[10..12].copy_from_slice(&(n as u16).to_le_bytes());
        p[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        p[PAGE_HEADER..data_start].copy_from_slice(&elems);
        p[data_start..total].copy_from_slice(&body);
        self.write_page(id, &p)?;
        Ok(id)
    }
}

impl<W: Write + Seek> BucketWriter<'_, W> {
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        if self
            .tree
            .last_key
            .as_deref()
            .is_some_and(|last| last >= key)
        {
            return Err(out_of_order("key", key));
        }
        self.tree.add(self.file, key.to_vec(), value.to_vec(), 0)
    }

    pub fn finish(self) -> std::io::Result<()> {
        let root = self.tree.finish(self.file)?;
        let mut header = root.to_le_bytes().to_vec();
        header.extend_from_slice(&0u64.to_le_bytes());
        self.file.top.push((self.name, header, BUCKET_LEAF_FLAG));
        Ok(())
    }
}

fn out_of_order(what: &str, name: &[u8]) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("bbolt {what} {name:02x?} is not after the previous one"),
    )
}

/// Builds one B+tree bottom-up as items arrive in order: leaves are filled to about half a
/// page (bbolt's default fill) and written as they fill; the branch levels are built from one
/// (first key, page) entry per leaf once the last item is in.
#[derive(Default)]
struct TreeBuilder {
    chunk: Vec<(Vec<u8>, Vec<u8>, u32)>,
    chunk_bytes: usize,
    leaves: Vec<(Vec<u8>, u64)>,
    last_key: Option<Vec<u8>>,
}

impl TreeBuilder {
    fn add<W: Write + Seek>(
        &mut self,
        file: &mut FileWriter<W>,
        key: Vec<u8>,
        value: Vec<u8>,
        flags: u32,
    ) -> std::io::Result<()> {
        let size = ELEM + key.len() + value.len();
        if !self.chunk.is_empty()
            && PAGE_HEADER + self.chunk_bytes + size > file.page_size / 2
            && self.chunk.len() >= 2
        {
            self.flush_leaf(file)?;
        }
        self.chunk_bytes += size;
        self.last_key = Some(key.clone());
        self.chunk.push((key, value, flags));
        Ok(())
    }

    fn flush_leaf<W: Write + Seek>(&mut self, file: &mut FileWriter<W>) -> std::io::Result<()> {
        let first = self.chunk.first().map(|c| c.0.clone()).unwrap_or_default();
        let id = file.node(true, &self.chunk, &[])?;
        self.leaves.push((first, id));
        self.chunk.clear();
        self.chunk_bytes = 0;
        Ok(())
    }

    /// Writes what is left and the branch levels; returns the root page.
    fn finish<W: Write + Seek>(mut self, file: &mut FileWriter<W>) -> std::io::Result<u64> {
        if !self.chunk.is_empty() || self.leaves.is_empty() {
            self.flush_leaf(file)?;
        }
        let mut level = std::mem::take(&mut self.leaves);
        let threshold = file.page_size / 2;
        while level.len() > 1 {
            let mut next = Vec::new();
            let mut chunk: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut size = PAGE_HEADER;
            for entry in level {
                let entry_size = ELEM + entry.0.len();
                if !chunk.is_empty() && size + entry_size > threshold && chunk.len() >= 2 {
                    next.push(branch(file, &chunk)?);
                    chunk.clear();
                    size = PAGE_HEADER;
                }
                size += entry_size;
                chunk.push(entry);
            }
            if !chunk.is_empty() {
                next.push(branch(file, &chunk)?);
            }
            level = next;
        }
        Ok(level[0].1)
    }
}

fn branch<W: Write + Seek>(
    file: &mut FileWriter<W>,
    chunk: &[(Vec<u8>, u64)],
) -> std::io::Result<(Vec<u8>, u64)> {
    let items: Vec<(Vec<u8>, Vec<u8>, u32)> = chunk
        .iter()
        .map(|(k, _)| (k.clone(), Vec::new(), 0))
        .collect();
    let children: Vec<u64> = chunk.iter().map(|(_, id)| *id).collect();
    let id = file.node(false, &items, &children)?;
    Ok((chunk[0].0.clone(), id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_it_reads() {
        let mut key = Bucket::new();
        for i in 0..2000u32 {
            key.insert(i.to_be_bytes().to_vec(), vec![b'v'; (i % 50) as usize]);
        }
        key.insert(b"big".to_vec(), vec![7u8; 10000]);
        let mut meta = Bucket::new();
        meta.insert(b"consistent_index".to_vec(), 5u64.to_be_bytes().to_vec());
        let buckets = vec![
            (b"key".to_vec(), key.clone()),
            (b"meta".to_vec(), meta.clone()),
            (b"empty".to_vec(), Bucket::new()),
        ];
        let mut sorted = buckets.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes = write(&sorted, 4096);
        let db = Db::from_bytes(bytes).unwrap();
        let (got, _) = db.read_all().unwrap();
        assert_eq!(got, sorted);
        assert!(db.check().is_empty(), "{:?}", db.check());
    }

    #[test]
    fn streams_a_large_bucket_to_a_file_and_reads_it_back() {
        let file = tempfile_path("stream");
        let out = std::fs::File::create(&file).unwrap();
        let mut w = FileWriter::new(out, 4096).unwrap();
        let mut b = w.bucket(b"key").unwrap();
        let mut expected = Bucket::new();
        for i in 0..50_000u32 {
            let (k, v) = (
                i.to_be_bytes().to_vec(),
                vec![(i % 251) as u8; (i % 300) as usize],
            );
            b.put(&k, &v).unwrap();
            expected.insert(k, v);
        }
        b.finish().unwrap();
        w.bucket(b"meta").unwrap().finish().unwrap();
        w.finish().unwrap();
        let db = Db::open(&file).unwrap();
        let (got, _) = db.read_all().unwrap();
        assert_eq!(
            got,
            vec![
                (b"key".to_vec(), expected),
                (b"meta".to_vec(), Bucket::new())
            ]
        );
        assert!(db.check().is_empty(), "{:?}", db.check());
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn keys_and_buckets_out_of_order_are_refused() {
        let mut w = FileWriter::new(std::io::Cursor::new(Vec::new()), 4096).unwrap();
        let mut b = w.bucket(b"b").unwrap();
        b.put(b"2", b"").unwrap();
        assert!(b.put(b"2", b"").is_err());
        assert!(b.put(b"1", b"").is_err());
        b.finish().unwrap();
        assert!(w.bucket(b"a").is_err());
        assert!(w.bucket(b"b").is_err());
        assert!(FileWriter::new(std::io::Cursor::new(Vec::new()), 1000).is_err());
    }

    fn tempfile_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("etcd-bbolt-{name}-{}.db", std::process::id()))
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Db::from_bytes(vec![0u8; 100]).is_err());
        let mut bytes = write(&[(b"k".to_vec(), Bucket::new())], 4096);
        for i in (0..bytes.len()).step_by(7) {
            bytes[i] ^= 0x5a;
        }
        if let Ok(db) = Db::from_bytes(bytes) {
            let _ = db.read_all();
            let _ = db.check();
        }
    }
}
