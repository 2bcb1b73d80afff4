//! Command-line arguments are bytes (Go passes them through untouched): bytes that are not
//! UTF-8 ride along inside our `String`s as private-use characters and come back out as the
//! original bytes where an argument becomes a key or a value.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

const BASE: u32 = 0x10_FF00;

pub fn decode(arg: &OsString) -> String {
    let mut out = String::new();
    let mut rest = arg.as_bytes();
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or(""));
                let n = e.error_len().unwrap_or(bad.len()).max(1).min(bad.len());
                for b in &bad[..n] {
                    out.push(char::from_u32(BASE + u32::from(*b)).unwrap_or('\u{fffd}'));
                }
                rest = &bad[n..];
            }
        }
    }
    out
}

/// The original bytes of an argument.
pub fn bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        let u = c as u32;
        if (BASE..BASE + 0x100).contains(&u) {
            out.push((u - BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn round_trips_any_bytes() {
        for raw in [
            b"plain".to_vec(),
            vec![0xff, b'a', 0xc3],
            "héllo".as_bytes().to_vec(),
        ] {
            let s = decode(&OsString::from_vec(raw.clone()));
            assert_eq!(bytes(&s), raw);
        }
    }
}
