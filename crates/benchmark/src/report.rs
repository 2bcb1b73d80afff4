//! The report printed at the end of a run, computed as etcd's `pkg/report` does: summary
//! (total, slowest, fastest, average, population standard deviation, requests per second), a
//! ten-bucket response time histogram and a latency distribution at fixed percentiles.
//! Pure: it takes latencies in seconds and returns text, so it is tested without a server.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Percentiles of the latency distribution, as etcd prints them.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
/// Number of histogram buckets between fastest and slowest (plus one for the slowest).
const HISTOGRAM_BUCKETS: usize = 10;
/// Length of the longest histogram bar.
const BAR_LEN_MAX: usize = 40;
const BAR_CHAR: char = '∎';

/// How numbers are printed: etcd's `%4.4f` by default, `%g` (full precision) with `--precise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fixed4,
    Full,
}

impl Precision {
    pub fn format(self, value: f64) -> String {
        match self {
            Precision::Fixed4 => format!("{value:4.4}"),
            Precision::Full => go_g(value),
        }
    }
}

/// Go's `%g` for a float64: the shortest representation, in exponent form when the decimal
/// exponent is below -4 or at least 21.
pub fn go_g(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let exp = value.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        // Rust prints `1.5e-5`; Go prints `1.5e-05`.
        let s = format!("{value:e}");
        match s.split_once('e') {
            Some((mantissa, exponent)) => {
                let (sign, digits) = match exponent.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exponent),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{value}")
    }
}

/// Go's `time.Duration.String`: `0s`, `850ns`, `1.5µs`, `2.25ms`, `1.5s`, `1m30s`, `1h0m0s`.
pub fn go_duration(d: Duration) -> String {
    fn frac(value: u64, digits: u32) -> String {
        let scale = 10u64.pow(digits);
        let (whole, rest) = (value / scale, value % scale);
        if rest == 0 {
            return whole.to_string();
        }
        let fraction = format!("{rest:0width$}", width = digits as usize);
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    }
    let ns = d.as_nanos() as u64;
    match ns {
        0 => "0s".to_string(),
        1..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{}µs", frac(ns, 3)),
        1_000_000..1_000_000_000 => format!("{}ms", frac(ns, 6)),
        _ => {
            let secs = frac(ns % 60_000_000_000, 9);
            let minutes = ns / 60_000_000_000;
            match (minutes / 60, minutes % 60) {
                (0, 0) => format!("{secs}s"),
                (0, m) => format!("{m}m{secs}s"),
                (h, m) => format!("{h}h{m}m{secs}s"),
            }
        }
    }
}

/// go-humanize's `Bytes`: SI units with one decimal below 10 (`82 B`, `1.5 kB`, `25 MB`).
pub fn humanize_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (bytes as f64 / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

/// The outcome of one request.
#[derive(Clone, Debug)]
pub struct Sample {
    pub latency: Duration,
    pub error: Option<String>,
    /// Which kind of request (e.g. read or write in `txn-mixed`); 0 when there is one kind.
    pub tag: u8,
    /// The second (Unix time) the request started, for `--sample`.
    pub start_unix_secs: u64,
}

/// Statistics over the successful requests of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Sorted latencies of successful requests, in seconds.
    pub latencies: Vec<f64>,
    pub total: Duration,
    pub fastest: f64,
    pub slowest: f64,
    pub average: f64,
    pub stddev: f64,
    pub rps: f64,
    /// Error message to count, sorted by message.
    pub errors: BTreeMap<String, usize>,
    /// Successful requests per second they started in, for `--sample`.
    pub seconds: BTreeMap<u64, Second>,
}

/// The successful requests that started in one second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    pub count: u64,
    pub total: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Stats {
    pub fn new(samples: &[Sample], total: Duration) -> Stats {
        let mut latencies = Vec::with_capacity(samples.len());
        let mut errors = BTreeMap::new();
        for sample in samples {
            match &sample.error {
                Some(e) => *errors.entry(e.clone()).or_insert(0) += 1,
                None => latencies.push(sample.latency.as_secs_f64()),
            }
        }
        let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
        for sample in samples.iter().filter(|s| s.error.is_none()) {
            let second = seconds.entry(sample.start_unix_secs).or_default();
            if second.count == 0 || sample.latency < second.min {
                second.min = sample.latency;
            }
            second.max = second.max.max(sample.latency);
            second.total += sample.latency;
            second.count += 1;
        }
        latencies.sort_by(f64::total_cmp);
        let mut stats = Stats {
            total,
            errors,
            seconds,
            ..Stats::default()
        };
        if !latencies.is_empty() {
            let n = latencies.len() as f64;
            stats.fastest = latencies[0];
            stats.slowest = latencies[latencies.len() - 1];
            stats.average = latencies.iter().sum::<f64>() / n;
            let variance = latencies
                .iter()
                .map(|l| (l - stats.average).powi(2))
                .sum::<f64>()
                / n;
            stats.stddev = variance.sqrt();
            let total_secs = total.as_secs_f64();
            if total_secs > 0.0 {
                stats.rps = n / total_secs;
            }
        }
        stats.latencies = latencies;
        stats
    }

    /// Latency at each of [`PERCENTILES`]: the first sorted latency whose rank (as a
    /// percentage of the count) reaches the percentile, as etcd computes it; 0 when none does.
    pub fn percentiles(&self) -> [f64; PERCENTILES.len()] {
        let mut out = [0.0; PERCENTILES.len()];
        let n = self.latencies.len();
        let mut j = 0;
        for (i, latency) in self.latencies.iter().enumerate() {
            if j >= PERCENTILES.len() {
                break;
            }
            let current = i as f64 * 100.0 / n as f64;
            if current >= PERCENTILES[j] {
                out[j] = *latency;
                j += 1;
            }
        }
        out
    }

    /// Histogram buckets: upper bounds from fastest to slowest in ten equal steps (the first
    /// bound is the fastest latency itself) and the number of latencies in each.
    pub fn histogram(&self) -> Vec<(f64, usize)> {
        let step = (self.slowest - self.fastest) / HISTOGRAM_BUCKETS as f64;
        let mut buckets: Vec<(f64, usize)> = (0..HISTOGRAM_BUCKETS)
            .map(|i| (self.fastest + step * i as f64, 0))
            .collect();
        buckets.push((self.slowest, 0));
        let mut b = 0;
        for latency in &self.latencies {
            while *latency > buckets[b].0 && b < buckets.len() - 1 {
                b += 1;
            }
            buckets[b].1 += 1;
        }
        buckets
    }

    /// `--sample`'s table: one CSV row per second from the first to the last (seconds without
    /// a request included, as zeros), latencies as Go prints durations.
    pub fn time_series(&self) -> String {
        let mut s = String::from("\nSample in one second (unix latency throughput):\n");
        s.push_str("UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n");
        let (Some(first), Some(last)) = (self.seconds.keys().next(), self.seconds.keys().last())
        else {
            return s;
        };
        let empty = Second::default();
        for t in *first..=*last {
            let second = self.seconds.get(&t).unwrap_or(&empty);
            let average = second
                .total
                .checked_div(second.count as u32)
                .unwrap_or(Duration::ZERO);
            let _ = writeln!(
                s,
                "{t},{},{},{},{}",
                go_duration(second.min),
                go_duration(average),
                go_duration(second.max),
                second.count
            );
        }
        s
    }

    /// The report as etcd prints it.
    pub fn render(&self, precision: Precision, sample: bool) -> String {
        let secs = |v: f64| format!("{} secs", precision.format(v));
        let mut s = String::new();
        // As etcd, a run without a successful request prints only its errors.
        if !self.latencies.is_empty() {
            let _ = writeln!(s, "\nSummary:");
            let _ = writeln!(s, "  Total:\t{}.", secs(self.total.as_secs_f64()));
            let _ = writeln!(s, "  Slowest:\t{}.", secs(self.slowest));
            let _ = writeln!(s, "  Fastest:\t{}.", secs(self.fastest));
            let _ = writeln!(s, "  Average:\t{}.", secs(self.average));
            let _ = writeln!(s, "  Stddev:\t{}.", secs(self.stddev));
            let _ = writeln!(s, "  Requests/sec:\t{}", precision.format(self.rps));
            let _ = writeln!(s, "\nResponse time histogram:");
            let buckets = self.histogram();
            let max = buckets.iter().map(|b| b.1).max().unwrap_or(0);
            for (bound, count) in buckets {
                let bar_len = (count * BAR_LEN_MAX).checked_div(max).unwrap_or(0);
                let bar: String = std::iter::repeat_n(BAR_CHAR, bar_len).collect();
                let _ = writeln!(s, "  {} [{count}]\t|{bar}", precision.format(bound));
            }
            let _ = writeln!(s, "\nLatency distribution:");
            for (p, latency) in PERCENTILES.iter().zip(self.percentiles()) {
                if latency > 0.0 {
                    let _ = writeln!(s, "  {}% in {}.", go_g(*p), secs(latency));
                }
            }
            if sample {
                let _ = writeln!(s, "{}", self.time_series());
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\nError distribution:");
            for (message, count) in &self.errors {
                let _ = writeln!(s, "  [{count}]\t{message}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ms: u64) -> Sample {
        Sample {
            latency: Duration::from_millis(ms),
            error: None,
            tag: 0,
            start_unix_secs: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn summary_over_successes_only() {
        let mut samples: Vec<Sample> = [4, 2, 8, 6].into_iter().map(ok).collect();
        samples.push(Sample {
            latency: Duration::from_millis(100),
            error: Some("boom".into()),
            tag: 0,
            start_unix_secs: 0,
        });
        let stats = Stats::new(&samples, Duration::from_secs(2));
        assert_eq!(stats.latencies, vec![0.002, 0.004, 0.006, 0.008]);
        assert!(close(stats.fastest, 0.002));
        assert!(close(stats.slowest, 0.008));
        assert!(close(stats.average, 0.005));
        // Population stddev of 2,4,6,8 ms is sqrt(5) ms.
        assert!(close(stats.stddev, 5f64.sqrt() / 1000.0));
        assert!(close(stats.rps, 2.0));
        assert_eq!(stats.errors.get("boom"), Some(&1));
    }

    #[test]
    fn percentiles_use_etcd_rank_rule() {
        let samples: Vec<Sample> = (1..=100).map(ok).collect();
        let stats = Stats::new(&samples, Duration::from_secs(1));
        let p = stats.percentiles();
        // Index i has rank i%; the first index reaching p is ceil(p), latency (i+1) ms.
        let expected = [11, 26, 51, 76, 91, 96, 100];
        for (got, want) in p.iter().zip(expected) {
            assert!(close(*got, want as f64 / 1000.0), "{got} != {want}ms");
        }
        // 99.9% is never reached with 100 samples (the last rank is 99%).
        assert_eq!(p[7], 0.0);
    }

    #[test]
    fn histogram_buckets_cover_every_latency() {
        let samples: Vec<Sample> = (0..=10).map(|i| ok(10 + i * 10)).collect();
        let stats = Stats::new(&samples, Duration::from_secs(1));
        let h = stats.histogram();
        assert_eq!(h.len(), 11);
        assert!(close(h[0].0, 0.010));
        assert!(close(h[10].0, 0.110));
        assert_eq!(h.iter().map(|b| b.1).sum::<usize>(), 11);
        assert_eq!(h[0].1, 1, "fastest lands in the first bucket");
        // Bounds are every 10 ms, so each bucket holds one latency (up to float rounding
        // moving one into its neighbour).
        assert!(h.iter().all(|b| b.1 <= 2));
    }

    #[test]
    fn histogram_with_equal_latencies() {
        let samples: Vec<Sample> = (0..5).map(|_| ok(3)).collect();
        let stats = Stats::new(&samples, Duration::from_secs(1));
        let h = stats.histogram();
        assert_eq!(h[0].1, 5);
    }

    #[test]
    fn render_layout() {
        let samples: Vec<Sample> = (1..=4).map(ok).collect();
        let text =
            Stats::new(&samples, Duration::from_millis(500)).render(Precision::Fixed4, false);
        assert!(
            text.starts_with("\nSummary:\n  Total:\t0.5000 secs.\n"),
            "{text}"
        );
        assert!(text.contains("  Slowest:\t0.0040 secs.\n"));
        assert!(text.contains("  Requests/sec:\t8.0000\n"));
        assert!(text.contains("\nResponse time histogram:\n  0.0010 [1]\t|"));
        assert!(text.contains("\nLatency distribution:\n  10% in 0.0020 secs.\n"));
        // As etcd, each latency fills at most one percentile: 10% and 25% take ranks 25% and
        // 50%, 50% takes 75%, and the rest are not printed.
        assert!(text.ends_with("  25% in 0.0030 secs.\n  50% in 0.0040 secs.\n"));
        assert!(!text.contains("  75% in"));
        assert!(!text.contains("Error distribution"));
    }

    #[test]
    fn render_run_without_success_prints_only_errors() {
        assert_eq!(
            Stats::new(&[], Duration::from_secs(1)).render(Precision::Fixed4, true),
            ""
        );
        let failed = Sample {
            error: Some("etcdserver: too many requests".into()),
            ..ok(1)
        };
        let text = Stats::new(&[failed.clone(), failed], Duration::from_secs(1))
            .render(Precision::Fixed4, false);
        assert_eq!(
            text,
            "\nError distribution:\n  [2]\tetcdserver: too many requests\n"
        );
    }

    #[test]
    fn go_duration_matches_go() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_micros(2_250)), "2.25ms");
        assert_eq!(go_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn time_series_fills_empty_seconds() {
        let at = |t: u64, ms: u64| Sample {
            start_unix_secs: t,
            ..ok(ms)
        };
        let stats = Stats::new(&[at(10, 2), at(10, 4), at(12, 1)], Duration::from_secs(3));
        let text = stats.render(Precision::Fixed4, true);
        let table = text
            .split("Sample in one second (unix latency throughput):\n")
            .nth(1)
            .unwrap();
        assert_eq!(
            table,
            "UNIX-SECOND,MIN-LATENCY-MS,AVG-LATENCY-MS,MAX-LATENCY-MS,AVG-THROUGHPUT\n\
             10,2ms,3ms,4ms,2\n11,0s,0s,0s,0\n12,1ms,1ms,1ms,1\n\n"
        );
    }

    #[test]
    fn humanize_bytes_matches_go_humanize() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(82), "82 B");
        assert_eq!(humanize_bytes(1_500), "1.5 kB");
        assert_eq!(humanize_bytes(20_480), "20 kB");
        assert_eq!(humanize_bytes(25_000_000), "25 MB");
    }

    #[test]
    fn go_g_matches_go() {
        assert_eq!(go_g(0.00123), "0.00123");
        assert_eq!(go_g(0.0000123), "1.23e-05");
        assert_eq!(go_g(99.9), "99.9");
        assert_eq!(go_g(10.0), "10");
        assert_eq!(go_g(0.0), "0");
    }
}
