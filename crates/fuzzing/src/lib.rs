//! The fuzz driver of the tests, on stable Rust.
//!
//! A fuzz target is a decoder of untrusted bytes (a WAL segment, a bbolt file, a peer frame, a
//! config file...) with its properties written as proptest properties. This crate runs them:
//!
//! - **Fixed by default.** Each property runs its given number of cases from a seed derived
//!   from its name, so a plain `cargo test` is quick and repeatable.
//! - **For a time budget** when `FUZZ_SECONDS` is set (CI sets 30): a target's properties
//!   share that many seconds, running round after round of cases, each round from the next
//!   seed, until the time is spent. A failure names its round; `FUZZ_ROUND=N` starts there, so
//!   any failure replays on any machine.
//! - **From a corpus.** Each target commits real files under `tests/corpus/<target>/` (made by
//!   the real writers: our WAL, etcd's, a bbolt file etcd wrote...); [`mutations_of`] damages
//!   them the way disks and networks do (flipped bits, cut tails, spliced chunks), which
//!   reaches deeper into a decoder than bytes drawn at random. Failures found are kept as
//!   proptest keeps them (`*.proptest-regressions` beside the test) and replayed first.
//!
//! [`fuzz!`] declares a target's properties with proptest's syntax.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// Seconds each target may fuzz for; unset, properties run their fixed cases once.
pub const BUDGET_ENV: &str = "FUZZ_SECONDS";
/// The round a property starts from (to replay a failure reported in that round).
pub const ROUND_ENV: &str = "FUZZ_ROUND";

/// One property of a target, as [`fuzz!`] builds it.
pub struct Property {
    target: &'static str,
    name: &'static str,
    cases: u32,
    /// How many properties share the target's budget.
    share: u32,
    shrink: bool,
}

impl Property {
    pub fn new(target: &'static str, name: &'static str) -> Property {
        Property {
            target,
            name,
            cases: 256,
            share: 1,
            shrink: true,
        }
    }

    /// Cases per round.
    pub fn cases(mut self, cases: u32) -> Property {
        assert!(cases > 0, "a property needs at least one case per round");
        self.cases = cases;
        self
    }

    /// The target has `n` properties, which split its budget evenly.
    pub fn share(mut self, n: u32) -> Property {
        self.share = n.max(1);
        self
    }

    /// Reports the first failure as found. For differential tests, whose servers have moved
    /// on by the time a case fails, so a shrunk case would run against other states.
    pub fn without_shrinking(mut self) -> Property {
        self.shrink = false;
        self
    }

    /// Runs `test` on inputs from `strategy`: one round, or rounds until this property's part
    /// of the budget is spent. Panics with the (shrunk) failing input and how to replay it.
    /// Failures are kept beside the caller's source, as proptest keeps them
    /// (`*.proptest-regressions`), and replayed first in every round.
    #[track_caller]
    pub fn run<S: Strategy>(
        self,
        strategy: &S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        let budget = budget().map(|b| b / self.share);
        let first_round = std::env::var(ROUND_ENV)
            .ok()
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0);
        let source_file = std::panic::Location::caller().file();
        let started = Instant::now();
        let mut rounds = 0u64;
        loop {
            let round = first_round + rounds;
            let mut config = Config {
                cases: self.cases,
                rng_seed: RngSeed::Fixed(seed(self.target, self.name, round)),
                source_file: Some(source_file),
                max_shrink_iters: if self.shrink { 4096 } else { 0 },
                ..Config::default()
            };
            // Without shrinking (a differential test), a case depends on the servers' state:
            // its seed alone would not replay it.
            if !self.shrink {
                config.failure_persistence = None;
            }
            if let Err(failure) = TestRunner::new(config).run(strategy, &test) {
                panic!(
                    "fuzz target {} property {} failed in round {round} \
                     ({ROUND_ENV}={round} replays it): {failure}",
                    self.target, self.name
                );
            }
            rounds += 1;
            match budget {
                Some(budget) if started.elapsed() < budget => {}
                _ => break,
            }
        }
        eprintln!(
            "fuzz {}/{}: {} cases in {rounds} round(s), {:.1?}",
            self.target,
            self.name,
            u64::from(self.cases) * rounds,
            started.elapsed()
        );
    }
}

fn budget() -> Option<Duration> {
    let secs: f64 = std::env::var(BUDGET_ENV).ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A round's seed: the same on every machine for the same target, property and round.
fn seed(target: &str, property: &str, round: u64) -> u64 {
    // FNV-1a: stable across Rust releases, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target
        .bytes()
        .chain([0])
        .chain(property.bytes())
        .chain([0])
        .chain(round.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The files of `tests/corpus/<target>/` under a crate's `manifest_dir`, in name order.
/// Panics if there are none: a target's corpus is committed with it.
pub fn corpus(manifest_dir: &str, target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(manifest_dir).join("tests/corpus").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "corpus {} is empty", dir.display());
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// Writes `bytes` as the corpus file `name` of `target` (for `#[ignore]`d tests that make a
/// corpus from our own encoders).
pub fn write_corpus(manifest_dir: &str, target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(manifest_dir).join("tests/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// One change to a file, at positions relative to its length when applied.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(prop::sample::Index, u8),
    SetByte(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, u16),
    /// A chunk of another corpus file written over this one (records that are valid on their
    /// own, in the wrong place).
    Splice {
        from: prop::sample::Index,
        at: prop::sample::Index,
        src: prop::sample::Index,
        len: u16,
    },
    /// A chunk of the file repeated (a record written twice, a page copied).
    Duplicate(prop::sample::Index, u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        3 => (index(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        2 => (index(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        1 => index().prop_map(Mutation::Truncate),
        1 => (index(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        1 => (index(), 1u16..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (index(), index(), index(), 1u16..512)
            .prop_map(|(from, at, src, len)| Mutation::Splice { from, at, src, len }),
        1 => (index(), 1u16..256).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(corpus: &[Vec<u8>], file: &mut Vec<u8>, m: &Mutation) {
    let len = file.len();
    match m {
        Mutation::FlipBit(i, bit) if len > 0 => file[i.index(len)] ^= 1 << bit,
        Mutation::SetByte(i, v) if len > 0 => file[i.index(len)] = *v,
        Mutation::Truncate(i) if len > 0 => file.truncate(i.index(len)),
        Mutation::Insert(i, bytes) => {
            let at = i.index(len + 1);
            file.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove(i, n) if len > 0 => {
            let at = i.index(len);
            file.drain(at..(at + usize::from(*n)).min(len));
        }
        Mutation::Splice {
            from,
            at,
            src,
            len: n,
        } => {
            let src = &corpus[src.index(corpus.len())];
            if src.is_empty() {
                return;
            }
            let start = from.index(src.len());
            let chunk = &src[start..(start + usize::from(*n)).min(src.len())];
            let at = at.index(len + 1);
            let end = (at + chunk.len()).min(len);
            file.splice(at..end, chunk.iter().copied());
        }
        Mutation::Duplicate(i, n) if len > 0 => {
            let start = i.index(len);
            let chunk = file[start..(start + usize::from(*n)).min(len)].to_vec();
            file.splice(start..start, chunk);
        }
        _ => {}
    }
}

/// A corpus file with up to eight mutations applied (none, sometimes: the intact file).
pub fn mutations_of(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!corpus.is_empty(), "mutations of an empty corpus");
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(mutation(), 0..8),
    )
        .prop_map(move |(pick, mutations)| {
            let mut file = corpus[pick.index(corpus.len())].clone();
            for m in &mutations {
                apply(&corpus, &mut file, m);
            }
            file
        })
}

/// Declares a target's properties as `#[test]`s, with proptest's syntax:
///
/// ```ignore
/// etcd_fuzzing::fuzz! {
///     target = "wal-segments", cases = 2000;
///
///     /// Doc comments and attributes are kept.
///     fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
///         decode_segment(&bytes);
///     }
/// }
/// ```
///
/// The properties split the target's budget. Bodies use `prop_assert!` and `?` on
/// `TestCaseError` as in proptest.
#[macro_export]
macro_rules! fuzz {
    (
        target = $target:literal, cases = $cases:expr;
        $(
            $(#[$meta:meta])*
            fn $name:ident($($arg:pat in $strategy:expr),+ $(,)?) $body:block
        )+
    ) => {
        $crate::fuzz! {
            @each target = $target, cases = $cases,
            properties = <[()]>::len(&[$($crate::fuzz!(@unit $name)),+]) as u32;
            $(
                $(#[$meta])*
                fn $name($($arg in $strategy),+) $body
            )+
        }
    };
    (@unit $name:ident) => { () };
    (
        @each target = $target:literal, cases = $cases:expr, properties = $properties:expr;
        $(
            $(#[$meta:meta])*
            fn $name:ident($($arg:pat in $strategy:expr),+) $body:block
        )+
    ) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                $crate::Property::new($target, stringify!($name))
                    .cases($cases)
                    .share($properties)
                    .run(&($($strategy,)+), |($($arg,)+)| {
                        $body
                        Ok(())
                    });
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn seeds_differ_by_target_property_and_round() {
        let a = seed("t", "p", 0);
        assert_ne!(a, seed("t", "p", 1));
        assert_ne!(a, seed("t", "q", 0));
        assert_ne!(a, seed("u", "p", 0));
        // Not a concatenation: "tp"/"" is not "t"/"p".
        assert_ne!(seed("tp", "", 0), a);
        assert_eq!(a, seed("t", "p", 0));
    }

    #[test]
    fn mutations_stay_in_bounds_and_change_files() {
        let corpus = vec![b"0123456789abcdef".to_vec(), Vec::new(), vec![7; 300]];
        let mut changed = 0;
        let mut runner = TestRunner::new(Config {
            rng_seed: RngSeed::Fixed(1),
            ..Config::default()
        });
        let strategy = mutations_of(corpus.clone());
        for _ in 0..200 {
            let file = strategy.new_tree(&mut runner).expect("a value").current();
            // Bounded growth: eight inserts, splices or duplicates at most.
            assert!(file.len() <= 300 + 8 * 512, "{} bytes", file.len());
            changed += usize::from(!corpus.contains(&file));
        }
        assert!(changed > 100, "only {changed} of 200 files were changed");
    }

    #[test]
    #[should_panic(expected = "FUZZ_ROUND=0 replays it")]
    fn a_failure_names_its_round() {
        // Without shrinking, so the failure is not kept as a regression to replay.
        Property::new("self", "fails")
            .cases(10)
            .without_shrinking()
            .run(&any::<u8>(), |_| Err(TestCaseError::fail("always")));
    }
}
