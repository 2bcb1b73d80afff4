//! Whole-log tests through the public API: recovery, trimming, crash and corruption handling.

mod corruption;
mod random;
mod recovery;
mod torn_tail;
pub(crate) mod util;
