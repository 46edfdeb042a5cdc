//! Percentiles of individually timed operations.
//!
//! Criterion reports the mean and median of *batches* of iterations. Latency goals are stated as
//! percentiles of single operations, so the latency benchmarks also time every operation on its
//! own (inside `iter_custom`, which times each iteration anyway) and keep the times here.

use std::time::Duration;

/// The individual times of one benchmark's operations.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    times: Vec<Duration>,
    sorted: bool,
}

impl Samples {
    /// Records one operation.
    pub fn push(&mut self, time: Duration) {
        self.times.push(time);
        self.sorted = false;
    }

    /// How many operations were recorded.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether nothing was recorded (the benchmark was filtered out).
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The `p`-th percentile (`0.0..=100.0`, nearest rank), or `None` without samples.
    pub fn percentile(&mut self, p: f64) -> Option<Duration> {
        if self.times.is_empty() {
            return None;
        }
        if !self.sorted {
            self.times.sort_unstable();
            self.sorted = true;
        }
        let rank = (p / 100.0 * self.times.len() as f64).ceil() as usize;
        Some(self.times[rank.clamp(1, self.times.len()) - 1])
    }
}

/// A duration in microseconds, for tables.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
