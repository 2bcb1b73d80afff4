//! Keys and values for the write benchmarks, made as etcd's benchmark makes them: a key is
//! `key_size` zero bytes with the key's number written at the front as a Go signed varint
//! (`binary.PutVarint`), the number being `i % key_space_size` with `--sequential-keys` and a
//! uniform random number below `key_space_size` otherwise.

use rand::{Rng, RngCore};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("--key-size {key_size} is too small to hold key number {number} ({needed} bytes)")]
    TooSmall {
        key_size: usize,
        number: i64,
        needed: usize,
    },
    #[error("--key-space-size must be positive")]
    EmptyKeySpace,
}

/// Writes `value` as Go's `binary.PutVarint` does (zig-zag, then 7 bits per byte) into `buf`,
/// returning the number of bytes written, or `None` when `buf` is too short.
pub fn put_varint(buf: &mut [u8], value: i64) -> Option<usize> {
    let mut ux = (value as u64) << 1;
    if value < 0 {
        ux = !ux;
    }
    let mut i = 0;
    while ux >= 0x80 {
        *buf.get_mut(i)? = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    *buf.get_mut(i)? = ux as u8;
    Some(i + 1)
}

/// Generates the key of each request in turn.
pub struct KeyGen {
    key_size: usize,
    key_space_size: u64,
    sequential: bool,
    next: u64,
}

impl KeyGen {
    pub fn new(key_size: usize, key_space_size: u64, sequential: bool) -> Result<Self, KeyError> {
        if key_space_size == 0 {
            return Err(KeyError::EmptyKeySpace);
        }
        let generator = KeyGen {
            key_size,
            key_space_size,
            sequential,
            next: 0,
        };
        // Check the largest number fits, so no key fails half way through a run.
        generator.key_for(key_space_size - 1)?;
        Ok(generator)
    }

    pub fn key_for(&self, number: u64) -> Result<Vec<u8>, KeyError> {
        let mut key = vec![0u8; self.key_size];
        let number = number as i64;
        match put_varint(&mut key, number) {
            Some(_) => Ok(key),
            None => {
                let mut scratch = [0u8; 10];
                Err(KeyError::TooSmall {
                    key_size: self.key_size,
                    number,
                    needed: put_varint(&mut scratch, number).unwrap_or(10),
                })
            }
        }
    }

    pub fn next_key(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        let number = if self.sequential {
            let n = self.next % self.key_space_size;
            self.next += 1;
            n
        } else {
            rng.random_range(0..self.key_space_size)
        };
        // `new` checked that every number below key_space_size fits.
        self.key_for(number).unwrap_or_default()
    }
}

/// Random bytes of the given length, for values.
pub fn random_bytes(len: usize, rng: &mut impl RngCore) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_go() {
        let mut b = [0u8; 10];
        assert_eq!(put_varint(&mut b, 0), Some(1));
        assert_eq!(b[0], 0);
        assert_eq!(put_varint(&mut b, 1), Some(1));
        assert_eq!(b[0], 2);
        assert_eq!(put_varint(&mut b, -1), Some(1));
        assert_eq!(b[0], 1);
        assert_eq!(put_varint(&mut b, 64), Some(2));
        assert_eq!(&b[..2], &[0x80, 0x01]);
        assert_eq!(put_varint(&mut b[..1], 64), None);
    }

    #[test]
    fn keys_have_key_size() {
        let mut rng = rand::rng();
        let mut g = KeyGen::new(8, 1000, false).unwrap();
        for _ in 0..100 {
            assert_eq!(g.next_key(&mut rng).len(), 8);
        }
        assert_eq!(random_bytes(13, &mut rng).len(), 13);
    }

    #[test]
    fn sequential_keys_wrap_around_key_space() {
        let mut rng = rand::rng();
        let mut g = KeyGen::new(4, 3, true).unwrap();
        let keys: Vec<Vec<u8>> = (0..7).map(|_| g.next_key(&mut rng)).collect();
        assert_eq!(keys[0], vec![0, 0, 0, 0]);
        assert_eq!(keys[1], vec![2, 0, 0, 0]);
        assert_eq!(keys[2], vec![4, 0, 0, 0]);
        assert_eq!(keys[3], keys[0]);
        assert_eq!(keys[6], keys[0]);
    }

    #[test]
    fn random_keys_stay_in_key_space() {
        let mut rng = rand::rng();
        let space = 5;
        let mut g = KeyGen::new(8, space, false).unwrap();
        let allowed: Vec<Vec<u8>> = (0..space).map(|n| g.key_for(n).unwrap()).collect();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let k = g.next_key(&mut rng);
            assert!(allowed.contains(&k));
            seen.insert(k);
        }
        assert_eq!(seen.len(), space as usize, "500 draws hit all 5 keys");
    }

    #[test]
    fn default_key_space_is_one_key() {
        let mut rng = rand::rng();
        let mut g = KeyGen::new(8, 1, false).unwrap();
        assert_eq!(g.next_key(&mut rng), vec![0u8; 8]);
    }

    #[test]
    fn key_too_small_is_refused_up_front() {
        // 64 needs two varint bytes.
        assert!(matches!(
            KeyGen::new(1, 65, true),
            Err(KeyError::TooSmall { needed: 2, .. })
        ));
        assert_eq!(KeyGen::new(8, 0, true).err(), Some(KeyError::EmptyKeySpace));
    }
}
