//! HPACK (RFC 7541) for [`super`]: a decoder that follows the client's dynamic table, and the
//! one encoding we emit, literals that leave the receiver's table alone.
//!
//! Written here rather than taken from a crate because it faces unauthenticated clients and
//! must be bounded in time as well as memory. `loona-hpack` (like `hpack`, which it forks)
//! builds a hash table of the whole Huffman code for every Huffman string, so one 1 MiB block
//! of empty strings costs seconds of CPU; here the code is a tree built at compile time, a
//! few instructions per bit (that block: ~60 ms in a debug build). `loona-hpack` stays as the
//! reference the tests compare against. The limits are h2's (integers of at most 5 bytes, size
//! updates only at the start of a block and within SETTINGS_HEADER_TABLE_SIZE), so a block
//! that hyper would accept is not refused here.

use std::collections::VecDeque;

/// A decoded header list, in order, as (name, value) pairs.
pub(super) type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a header block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum HpackError {
    #[error("header block cut short")]
    Truncated,
    #[error("integer encoded in more than 5 bytes")]
    IntegerTooLong,
    #[error("table index {0} out of range")]
    BadIndex(usize),
    #[error("Huffman string holds the EOS symbol")]
    HuffmanEos,
    #[error("Huffman string padding is longer than 7 bits or not all ones")]
    HuffmanPadding,
    #[error("dynamic table size update to {size} exceeds the {allowed} bytes allowed")]
    TableTooLarge { size: usize, allowed: usize },
    #[error("dynamic table size update after a header field")]
    LateTableSizeUpdate,
    #[error("decoded header list exceeds {0} bytes")]
    ListTooLarge(usize),
}

/// The receiving side of one connection's HPACK context.
pub(super) struct Decoder {
    /// The dynamic table, newest entry first (index 62 is `table[0]`).
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Size of `table` as RFC 7541 §4.1 counts it: name + value + 32 per entry.
    table_bytes: usize,
    /// The size the encoder last chose (dynamic table size update).
    table_bytes_max: usize,
    /// The most the encoder may choose: our side's SETTINGS_HEADER_TABLE_SIZE.
    table_bytes_allowed: usize,
}

impl Decoder {
    /// A decoder for a connection whose SETTINGS_HEADER_TABLE_SIZE is `table_bytes_allowed`.
    pub(super) fn new(table_bytes_allowed: usize) -> Self {
        Decoder {
            table: VecDeque::new(),
            table_bytes: 0,
            table_bytes_max: table_bytes_allowed,
            table_bytes_allowed,
        }
    }

    /// Decodes one complete header block, updating the dynamic table. The decoded list is
    /// bounded by `list_bytes_max` (counted as name + value + 32 per field, RFC 9113 §6.5.2),
    /// checked before each field is copied.
    pub(super) fn decode(
        &mut self,
        block: &[u8],
        list_bytes_max: usize,
    ) -> Result<HeaderList, HpackError> {
        let mut src = block;
        let mut headers = Vec::new();
        let mut list_bytes = 0usize;
        let mut admit = |name_len: usize, value_len: usize| {
            list_bytes = list_bytes.saturating_add(name_len + value_len + 32);
            if list_bytes > list_bytes_max {
                return Err(HpackError::ListTooLarge(list_bytes_max));
            }
            Ok(())
        };
        let mut fields_seen = false;
        while let Some(&first) = src.first() {
            if first & 0x20 != 0 && first & 0xc0 == 0 {
                // 001xxxxx: dynamic table size update, only before the first field (§4.2).
                if fields_seen {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = take_integer(&mut src, 5)?;
                if size > self.table_bytes_allowed {
                    return Err(HpackError::TableTooLarge {
                        size,
                        allowed: self.table_bytes_allowed,
                    });
                }
                self.table_bytes_max = size;
                self.evict(0);
                continue;
            }
            fields_seen = true;
            if first & 0x80 != 0 {
                // 1xxxxxxx: indexed field (§6.1).
                let (name, value) = self.get(take_integer(&mut src, 7)?)?;
                admit(name.len(), value.len())?;
                headers.push((name.to_vec(), value.to_vec()));
                continue;
            }
            // 01xxxxxx: literal with incremental indexing; 0000xxxx and 0001xxxx: literal
            // without indexing and never indexed (§6.2).
            let indexing = first & 0x40 != 0;
            let name_index = take_integer(&mut src, if indexing { 6 } else { 4 })?;
            let name = if name_index == 0 {
                take_string(&mut src)?
            } else {
                self.get(name_index)?.0.to_vec()
            };
            let value = take_string(&mut src)?;
            admit(name.len(), value.len())?;
            if indexing {
                self.insert(&name, &value);
            }
            headers.push((name, value));
        }
        Ok(headers)
    }

    /// The entry at a 1-based index into the static table followed by the dynamic table.
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if let Some(&(name, value)) = index.checked_sub(1).and_then(|i| STATIC_TABLE.get(i)) {
            return Ok((name, value));
        }
        index
            .checked_sub(STATIC_TABLE.len() + 1)
            .and_then(|i| self.table.get(i))
            .map(|(name, value)| (&name[..], &value[..]))
            .ok_or(HpackError::BadIndex(index))
    }

    /// Adds an entry, evicting the oldest ones to make room; an entry larger than the whole
    /// table empties it and is not added (§4.4).
    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let entry_bytes = name.len() + value.len() + 32;
        if entry_bytes > self.table_bytes_max {
            self.evict(self.table_bytes_max);
            return;
        }
        self.evict(entry_bytes);
        self.table.push_front((name.to_vec(), value.to_vec()));
        self.table_bytes += entry_bytes;
    }

    /// Evicts the oldest entries until `room` bytes more would fit.
    fn evict(&mut self, room: usize) {
        while self.table_bytes + room > self.table_bytes_max {
            let Some((name, value)) = self.table.pop_back() else {
                break;
            };
            self.table_bytes -= name.len() + value.len() + 32;
        }
        debug_assert!(!self.table.is_empty() || self.table_bytes == 0);
    }
}

/// Reads an integer with an N-bit prefix (§5.1), at most 5 bytes like h2.
fn take_integer(src: &mut &[u8], prefix_bits: u32) -> Result<usize, HpackError> {
    let (&first, rest) = src.split_first().ok_or(HpackError::Truncated)?;
    *src = rest;
    let prefix_max = (1u8 << prefix_bits) - 1;
    let mut value = usize::from(first & prefix_max);
    if value < usize::from(prefix_max) {
        return Ok(value);
    }
    for shift in [0, 7, 14, 21] {
        let (&byte, rest) = src.split_first().ok_or(HpackError::Truncated)?;
        *src = rest;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::IntegerTooLong)
}

/// Reads a string literal (§5.2), Huffman-coded or not.
fn take_string(src: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman = src.first().is_some_and(|b| b & 0x80 != 0);
    let len = take_integer(src, 7)?;
    if len > src.len() {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = src.split_at(len);
    *src = rest;
    if huffman {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// Appends `name: value` as a literal field without indexing, new name, no Huffman (§6.2.2):
/// decodable by any receiver whatever its dynamic table holds, and leaving that table alone.
pub(super) fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    encode_string(name, out);
    encode_string(value, out);
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    encode_integer(s.len(), 7, out); // H bit 0: not Huffman-coded
    out.extend_from_slice(s);
}

/// Appends an integer with an N-bit prefix whose other bits are zero (§5.1).
pub(super) fn encode_integer(mut value: usize, prefix_bits: u32, out: &mut Vec<u8>) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.push(value as u8);
        return;
    }
    out.push(prefix_max as u8);
    value -= prefix_max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes a Huffman-coded string (§5.2, Appendix B): at most 8/5 of its coded length.
fn huffman_decode(src: &[u8]) -> Result<Vec<u8>, HpackError> {
    let mut out = Vec::with_capacity(src.len() + src.len() / 2);
    let mut node = 0usize;
    // Bits read since the last symbol, and whether they were all ones: at the end they are
    // the padding, which must be a prefix of EOS (all ones) shorter than 8 bits.
    let mut pending_bits = 0u32;
    let mut pending_ones = true;
    for &byte in src {
        for shift in (0..8).rev() {
            let bit = (byte >> shift) & 1;
            let next = HUFFMAN_TREE[node][usize::from(bit)];
            if next & LEAF == 0 {
                node = usize::from(next);
                pending_bits += 1;
                pending_ones &= bit == 1;
                continue;
            }
            let symbol = next & !LEAF;
            if symbol == EOS {
                return Err(HpackError::HuffmanEos);
            }
            out.push(symbol as u8);
            node = 0;
            pending_bits = 0;
            pending_ones = true;
        }
    }
    if pending_bits > 7 || !pending_ones {
        return Err(HpackError::HuffmanPadding);
    }
    Ok(out)
}

/// Marks a child in [`HUFFMAN_TREE`] as a symbol rather than a node.
const LEAF: u16 = 0x8000;
const EOS: u16 = 256;

/// The Huffman code as a binary tree: for each internal node (the root is 0), its children
/// for bit 0 and bit 1, each a node index or `LEAF | symbol`. 257 symbols make 256 internal
/// nodes. Built at compile time from [`HUFFMAN_CODES`].
static HUFFMAN_TREE: [[u16; 2]; 256] = huffman_tree();

const fn huffman_tree() -> [[u16; 2]; 256] {
    let mut tree = [[0u16; 2]; 256];
    let mut nodes = 1; // the root
    let mut symbol = 0;
    while symbol < HUFFMAN_CODES.len() {
        let (code, len) = HUFFMAN_CODES[symbol];
        let mut node = 0;
        let mut bit_pos = len;
        while bit_pos > 1 {
            bit_pos -= 1;
            let bit = ((code >> bit_pos) & 1) as usize;
            if tree[node][bit] == 0 {
                tree[node][bit] = nodes;
                nodes += 1;
            }
            assert!(tree[node][bit] & LEAF == 0, "a code is a prefix of another");
            node = tree[node][bit] as usize;
        }
        assert!(tree[node][(code & 1) as usize] == 0, "two codes are equal");
        tree[node][(code & 1) as usize] = LEAF | symbol as u16;
        symbol += 1;
    }
    assert!(nodes == 256, "the code is not complete");
    tree
}

/// The Huffman code of RFC 7541 Appendix B: (code, length in bits) of each symbol 0..=256.
const HUFFMAN_CODES: [(u32, u32); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28), // 0x0 0x1 0x2 0x3
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28), // 0x4 0x5 0x6 0x7
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28), // 0x8 0x9 0xa 0xb
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28), // 0xc 0xd 0xe 0xf
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28), // 0x10 0x11 0x12 0x13
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28), // 0x14 0x15 0x16 0x17
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28), // 0x18 0x19 0x1a 0x1b
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28), // 0x1c 0x1d 0x1e 0x1f
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12), // 0x20 '!' '"' '#'
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11), // '$' '%' '&' 0x27
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11), // '(' ')' '*' '+'
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6), // ',' '-' '.' '/'
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6), // '0' '1' '2' '3'
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6), // '4' '5' '6' '7'
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8), // '8' '9' ':' ';'
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10), // '<' '=' '>' '?'
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7), // '@' 'A' 'B' 'C'
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7), // 'D' 'E' 'F' 'G'
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7), // 'H' 'I' 'J' 'K'
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7), // 'L' 'M' 'N' 'O'
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7), // 'P' 'Q' 'R' 'S'
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7), // 'T' 'U' 'V' 'W'
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13), // 'X' 'Y' 'Z' '['
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6), // 0x5c ']' '^' '_'
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5), // '`' 'a' 'b' 'c'
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6), // 'd' 'e' 'f' 'g'
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7), // 'h' 'i' 'j' 'k'
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5), // 'l' 'm' 'n' 'o'
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5), // 'p' 'q' 'r' 's'
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7), // 't' 'u' 'v' 'w'
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15), // 'x' 'y' 'z' '{'
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28), // '|' '}' '~' 0x7f
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20), // 0x80 0x81 0x82 0x83
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23), // 0x84 0x85 0x86 0x87
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23), // 0x88 0x89 0x8a 0x8b
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23), // 0x8c 0x8d 0x8e 0x8f
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23), // 0x90 0x91 0x92 0x93
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23), // 0x94 0x95 0x96 0x97
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23), // 0x98 0x99 0x9a 0x9b
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24), // 0x9c 0x9d 0x9e 0x9f
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22), // 0xa0 0xa1 0xa2 0xa3
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21), // 0xa4 0xa5 0xa6 0xa7
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24), // 0xa8 0xa9 0xaa 0xab
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23), // 0xac 0xad 0xae 0xaf
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21), // 0xb0 0xb1 0xb2 0xb3
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23), // 0xb4 0xb5 0xb6 0xb7
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22), // 0xb8 0xb9 0xba 0xbb
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23), // 0xbc 0xbd 0xbe 0xbf
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19), // 0xc0 0xc1 0xc2 0xc3
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25), // 0xc4 0xc5 0xc6 0xc7
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27), // 0xc8 0xc9 0xca 0xcb
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25), // 0xcc 0xcd 0xce 0xcf
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27), // 0xd0 0xd1 0xd2 0xd3
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24), // 0xd4 0xd5 0xd6 0xd7
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26), // 0xd8 0xd9 0xda 0xdb
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27), // 0xdc 0xdd 0xde 0xdf
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21), // 0xe0 0xe1 0xe2 0xe3
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23), // 0xe4 0xe5 0xe6 0xe7
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25), // 0xe8 0xe9 0xea 0xeb
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23), // 0xec 0xed 0xee 0xef
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26), // 0xf0 0xf1 0xf2 0xf3
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27), // 0xf4 0xf5 0xf6 0xf7
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27), // 0xf8 0xf9 0xfa 0xfb
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),  // 0xfc 0xfd 0xfe 0xff
    (0x3fffffff, 30), // EOS
];

/// The static table of RFC 7541 Appendix A; index 1 is element 0.
static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Huffman-codes `s` (tests only: we never emit Huffman strings).
#[cfg(test)]
pub(super) fn huffman_encode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut acc_bits) = (0u64, 0u32);
    for &byte in s {
        let (code, len) = HUFFMAN_CODES[usize::from(byte)];
        acc = (acc << len) | u64::from(code);
        acc_bits += len;
        while acc_bits >= 8 {
            acc_bits -= 8;
            out.push((acc >> acc_bits) as u8);
        }
        acc &= (1 << acc_bits) - 1;
    }
    if acc_bits > 0 {
        // Pad with the most significant bits of EOS: ones.
        out.push(((acc << (8 - acc_bits)) | ((1 << (8 - acc_bits)) - 1)) as u8);
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn list(pairs: &[(&str, &str)]) -> HeaderList {
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn table(decoder: &Decoder) -> HeaderList {
        decoder.table.iter().cloned().collect()
    }

    /// A small deterministic generator (xorshift64*), so failures replay.
    pub(in crate::h2_authority) struct Rng(pub(in crate::h2_authority) u64);
    impl Rng {
        pub(in crate::h2_authority) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(in crate::h2_authority) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(in crate::h2_authority) fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            let len = self.below(max_len + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    const NO_LIMIT: usize = usize::MAX;

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new(4096);
        let got = d.decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"), NO_LIMIT);
        let first = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
        let mut want = list(&first);
        want.extend(list(&[(":authority", "www.example.com")]));
        assert_eq!(got, Ok(want.clone()));

        let got = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf"), NO_LIMIT);
        want.extend(list(&[("cache-control", "no-cache")]));
        assert_eq!(got, Ok(want));

        let got = d.decode(
            &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
            NO_LIMIT,
        );
        let want = list(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]);
        assert_eq!(got, Ok(want));
        let want_table = list(&[
            ("custom-key", "custom-value"),
            ("cache-control", "no-cache"),
            (":authority", "www.example.com"),
        ]);
        assert_eq!(table(&d), want_table);
        assert_eq!(d.table_bytes, 164);
    }

    #[test]
    fn rfc7541_c6_responses_with_huffman_and_eviction() {
        let mut d = Decoder::new(256);
        let got = d.decode(
            &hex(
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0
                 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            ),
            NO_LIMIT,
        );
        let mut want = list(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
            ("location", "https://www.example.com"),
        ]);
        assert_eq!(got, Ok(want.clone()));
        assert_eq!(d.table_bytes, 222);

        let got = d.decode(&hex("4883 640e ffc1 c0bf"), NO_LIMIT);
        want[0].1 = b"307".to_vec();
        assert_eq!(got, Ok(want));
        assert_eq!(d.table_bytes, 222); // ":status: 302" was evicted

        let got = d.decode(
            &hex(
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b
                 d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27
                 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ),
            NO_LIMIT,
        );
        let set_cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        let want = list(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            ("set-cookie", set_cookie),
        ]);
        assert_eq!(got, Ok(want));
        let want_table = list(&[
            ("set-cookie", set_cookie),
            ("content-encoding", "gzip"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
        ]);
        assert_eq!(table(&d), want_table);
        assert_eq!(d.table_bytes, 215);
    }

    #[test]
    fn huffman_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)), Ok(all));
        for byte in 0..=255u8 {
            let s = [byte, b'a', byte];
            assert_eq!(huffman_decode(&huffman_encode(&s)), Ok(s.to_vec()));
        }
        assert_eq!(huffman_decode(&[]), Ok(Vec::new()));
    }

    #[test]
    fn huffman_rejects_eos_and_bad_padding() {
        // EOS is 30 one bits.
        assert_eq!(huffman_decode(&[0xff; 4]), Err(HpackError::HuffmanEos));
        // 'a' is 00011: three bits of padding must be ones, not zeros.
        assert_eq!(huffman_decode(&[0x18]), Err(HpackError::HuffmanPadding));
        assert_eq!(huffman_decode(&[0x1f]), Ok(b"a".to_vec()));
        // A whole byte of ones is padding longer than 7 bits.
        assert_eq!(
            huffman_decode(&[0x1f, 0xff]),
            Err(HpackError::HuffmanPadding)
        );
    }

    #[test]
    fn huffman_agrees_with_loona_hpack() {
        let mut reference = loona_hpack::huffman::HuffmanDecoder::new();
        let mut rng = Rng(0x1234_5678);
        for _ in 0..20_000 {
            let coded = if rng.below(2) == 0 {
                rng.bytes(12)
            } else {
                huffman_encode(&rng.bytes(12))
            };
            let ours = huffman_decode(&coded);
            let theirs = reference.decode(&coded);
            assert_eq!(
                ours.as_ref().ok(),
                theirs.as_ref().ok(),
                "input {coded:02x?}"
            );
        }
    }

    #[test]
    fn decoding_agrees_with_loona_hpack_across_blocks() {
        let names = [
            "content-type",
            ":path",
            "x-a",
            "x-bb",
            "user-agent",
            ":authority",
        ];
        let mut rng = Rng(42);
        let mut encoder = loona_hpack::Encoder::new();
        let mut reference = loona_hpack::Decoder::new();
        let mut ours = Decoder::new(4096);
        for _ in 0..300 {
            let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..rng.below(12))
                .map(|_| {
                    let name = names[rng.below(names.len())].as_bytes().to_vec();
                    let value = (b'a'..=b'z').take(rng.below(26)).collect::<Vec<u8>>();
                    let value = value.repeat(rng.below(40) + 1); // some evict the table
                    (name, value)
                })
                .collect();
            let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
            assert_eq!(ours.decode(&block, NO_LIMIT), Ok(fields.clone()));
            assert_eq!(reference.decode(&block).ok(), Some(fields));
        }
    }

    #[test]
    fn garbage_never_panics_and_agrees_when_both_accept() {
        let mut rng = Rng(7);
        for _ in 0..20_000 {
            let block = rng.bytes(24);
            let ours = Decoder::new(4096).decode(&block, 4096);
            let theirs = loona_hpack::Decoder::new().decode(&block);
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                assert_eq!(ours, theirs, "input {block:02x?}");
            }
        }
    }

    #[test]
    fn integers_round_trip_at_prefix_boundaries() {
        for value in [0, 1, 126, 127, 128, 254, 255, 16_383, 16_384, 1 << 20] {
            let mut encoded = Vec::new();
            encode_integer(value, 7, &mut encoded);
            let mut src = &encoded[..];
            assert_eq!(take_integer(&mut src, 7), Ok(value));
            assert!(src.is_empty());
        }
        // Six bytes: over h2's limit of five.
        let mut src = &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x00][..];
        assert_eq!(take_integer(&mut src, 7), Err(HpackError::IntegerTooLong));
        let mut src = &[0x7f, 0x80][..];
        assert_eq!(take_integer(&mut src, 7), Err(HpackError::Truncated));
    }

    #[test]
    fn encoded_literals_leave_the_table_empty() {
        let fields = list(&[
            (":authority", "127.0.0.1:2379"),
            ("x-long", &"v".repeat(300)),
        ]);
        let mut block = Vec::new();
        for (name, value) in &fields {
            encode_literal(name, value, &mut block);
        }
        let mut d = Decoder::new(4096);
        assert_eq!(d.decode(&block, NO_LIMIT), Ok(fields.clone()));
        assert!(d.table.is_empty());
        assert_eq!(
            loona_hpack::Decoder::new().decode(&block).ok(),
            Some(fields)
        );
    }

    #[test]
    fn rejects_what_h2_rejects() {
        let mut d = Decoder::new(4096);
        assert_eq!(d.decode(&[0x80], NO_LIMIT), Err(HpackError::BadIndex(0)));
        assert_eq!(d.decode(&[0xbe], NO_LIMIT), Err(HpackError::BadIndex(62)));
        assert_eq!(
            d.decode(&[0x0f, 0x2f], NO_LIMIT),
            Err(HpackError::BadIndex(62))
        );
        assert_eq!(
            d.decode(&[0x44, 0x05, b'/'], NO_LIMIT),
            Err(HpackError::Truncated)
        );
        // Size update to 8192 > 4096.
        let err = d.decode(&[0x3f, 0xe1, 0x3f, 0x82], NO_LIMIT);
        assert_eq!(
            err,
            Err(HpackError::TableTooLarge {
                size: 8192,
                allowed: 4096
            })
        );
        // Size update after a field.
        assert_eq!(
            d.decode(&[0x82, 0x20], NO_LIMIT),
            Err(HpackError::LateTableSizeUpdate)
        );
        // A size update first is fine, and shrinks the table.
        let mut d = Decoder::new(4096);
        d.decode(&[0x41, 0x01, b'a'], NO_LIMIT).unwrap();
        assert_eq!(d.table.len(), 1);
        assert_eq!(
            d.decode(&[0x20, 0x3f, 0xe1, 0x1f, 0x82], NO_LIMIT)
                .map(|l| l.len()),
            Ok(1)
        );
        assert!(d.table.is_empty());
    }

    #[test]
    fn list_limit_stops_a_reference_bomb() {
        let mut block = vec![0x40, 0x03];
        block.extend_from_slice(b"x-a");
        encode_integer(4000, 7, &mut block); // value length, not Huffman
        block.extend(std::iter::repeat_n(b'v', 4000));
        block.extend(std::iter::repeat_n(0xbe, 100_000)); // one byte: the 4 KB entry again
        let mut d = Decoder::new(4096);
        assert_eq!(
            d.decode(&block, 1 << 20),
            Err(HpackError::ListTooLarge(1 << 20))
        );
    }
}
