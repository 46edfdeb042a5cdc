//! Benchmarked operations as objects, so one group can time them with Criterion *and* run them
//! interleaved.
//!
//! Criterion measures the benchmarks of a group one after the other; on a small, shared machine
//! the load (and the CPU's speed) drifts between them by tens of percent, which lands on one side
//! of a ratio only. So after Criterion, each group runs the same [`Op`]s again, alternating
//! between them in short blocks ([`interleave`]), and reports percentiles and ratios of those
//! individual times: drift then hits every benchmark alike.

use std::{
    future::Future,
    pin::Pin,
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::stats::Samples;

/// The future of one operation.
pub type OpFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A byte stream of any transport, boxed so that different transports fit in one list.
pub trait Io: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// One benchmarked operation, repeatable.
pub trait Op {
    /// Untimed preparation of the next [`run`](Self::run) (a fresh client, say). Called inside
    /// the runtime.
    fn prepare(&mut self) {}

    /// Untimed warm-up before each series of runs (a Criterion sample, an interleaved block),
    /// for operations that depend on state other benchmarks can disturb (session tickets that
    /// another benchmark's handshakes evict from the server's cache, say).
    fn warm(&mut self) -> OpFuture<'_> {
        Box::pin(async {})
    }

    /// The timed operation. Panics on failure: a benchmark must not time errors.
    fn run(&mut self) -> OpFuture<'_>;
}

/// A named [`Op`] and the individual times of its interleaved runs.
pub struct Bench<'a> {
    /// The benchmark's name in its group.
    pub name: &'static str,
    /// The operation.
    pub op: Box<dyn Op + 'a>,
    /// Set once Criterion ran it (a filter may have skipped it).
    pub ran: bool,
    /// Times from [`interleave`].
    pub samples: Samples,
}

impl<'a> Bench<'a> {
    /// A benchmark that has not run yet.
    pub fn new(name: &'static str, op: impl Op + 'a) -> Self {
        Self {
            name,
            op: Box::new(op),
            ran: false,
            samples: Samples::default(),
        }
    }

    /// Warms up, then runs the operation `iters` times, summing the times of the runs only (not
    /// of [`Op::warm`] and [`Op::prepare`]). Call inside the runtime.
    pub async fn time(&mut self, iters: u64) -> Duration {
        self.ran = true;
        self.op.warm().await;
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            self.op.prepare();
            let start = Instant::now();
            self.op.run().await;
            total += start.elapsed();
        }
        total
    }
}

/// Runs `rounds` rounds over the benchmarks that ran under Criterion; each round runs each
/// `block` times in a row (so caches are as warm as under Criterion), starting one further along
/// the list than the round before. Records every run's time in its benchmark's samples. Call
/// inside the runtime.
pub async fn interleave(benches: &mut [Bench<'_>], rounds: usize, block: usize) {
    let active: Vec<usize> = (0..benches.len()).filter(|&i| benches[i].ran).collect();
    for round in 0..rounds {
        for k in 0..active.len() {
            let bench = &mut benches[active[(round + k) % active.len()]];
            bench.op.warm().await;
            for _ in 0..block {
                bench.op.prepare();
                let start = Instant::now();
                bench.op.run().await;
                let took = start.elapsed();
                bench.samples.push(took);
            }
        }
    }
}

/// How many interleaved rounds to run: `full` under `cargo bench`, `quick` with Criterion's
/// `--quick`, and two as a smoke test (`cargo test --benches`, no `--bench` flag).
pub fn rounds(full: usize, quick: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        2
    } else if args.iter().any(|a| a == "--quick") {
        quick
    } else {
        full
    }
}

/// Unwraps, or panics naming what failed: a benchmark must not time errors.
pub fn check<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}
