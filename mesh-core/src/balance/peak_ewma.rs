use std::time::Duration;

use super::{Algorithm, BalanceConfigError, Candidates, PickContext, algorithm::carry_over};
use crate::{
    clock::{Clock, Timestamp, duration_nanos},
    model::Endpoint,
    rng::Rng,
};

/// Settings for [`PeakEwma`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeakEwmaConfig {
    /// Latency assumed for an endpoint before its first response (Linkerd: 30 ms).
    pub default_rtt: Duration,
    /// Time constant of the decay: after this long without responses an estimate has fallen to
    /// `1/e` of its value, so a once-slow endpoint is tried again (Linkerd: 10 s).
    pub decay: Duration,
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        Self {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
        }
    }
}

impl PeakEwmaConfig {
    /// Checks that the decay is not zero.
    pub fn validate(&self) -> Result<(), BalanceConfigError> {
        if self.decay.is_zero() {
            return Err(BalanceConfigError::ZeroDuration {
                field: "peak EWMA decay",
            });
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct Estimate {
    /// Latency estimate in nanoseconds as of `stamp`.
    rtt_ns: f64,
    stamp: Timestamp,
    in_flight: u32,
}

impl Estimate {
    /// Weight of the stored estimate after `elapsed` (1 now, falling towards 0).
    fn decay_weight(&self, now: Timestamp, decay_ns: f64) -> f64 {
        let elapsed = duration_nanos(now.saturating_duration_since(self.stamp)) as f64;
        (-elapsed / decay_ns).exp()
    }

    /// Linkerd/Finagle's cost: decayed latency times (requests in flight + 1). The `+ 1.0`
    /// keeps in-flight counts meaningful once every estimate has decayed to nothing.
    fn cost(&self, now: Timestamp, decay_ns: f64) -> f64 {
        let rtt = self.rtt_ns * self.decay_weight(now, decay_ns);
        (rtt + 1.0) * (f64::from(self.in_flight) + 1.0)
    }

    /// Peak-sensitive update: a slower observation replaces the estimate at once; a faster one
    /// is blended in by how much time has passed.
    fn observe(&mut self, now: Timestamp, rtt_ns: f64, decay_ns: f64) {
        let w = self.decay_weight(now, decay_ns);
        let prior = self.rtt_ns * w;
        self.rtt_ns = if rtt_ns > prior {
            rtt_ns
        } else {
            prior + rtt_ns * (1.0 - w)
        };
        self.stamp = now;
    }
}

/// Power of two choices by least cost, with peak-EWMA latency (Linkerd's and Finagle's default;
/// Istio's `LEAST_REQUEST` in spirit).
///
/// Each pick draws two distinct candidates at random and takes the cheaper, where cost is the
/// time-decayed peak latency estimate multiplied by requests in flight plus one. Two random
/// choices avoid the herd behaviour of always taking the global minimum, and cost O(1). Latency
/// feedback comes from [`Balancer::on_start`](super::Balancer::on_start) and
/// [`on_complete`](super::Balancer::on_complete); time comes from the injected [`Clock`], so
/// tests drive decay with a [`ManualClock`](crate::clock::ManualClock). Weights are ignored, as in
/// Linkerd.
///
/// Reading a cost never changes state, so the choice does not depend on how often the balancer
/// is consulted.
#[derive(Debug)]
pub struct PeakEwma<C, R> {
    config: PeakEwmaConfig,
    decay_ns: f64,
    clock: C,
    rng: R,
    estimates: Vec<Estimate>,
}

impl<C: Clock, R: Rng> PeakEwma<C, R> {
    /// A balancer reading time from `clock` and randomness from `rng`.
    pub fn new(config: PeakEwmaConfig, clock: C, rng: R) -> Result<Self, BalanceConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            decay_ns: duration_nanos(config.decay) as f64,
            clock,
            rng,
            estimates: Vec::new(),
        })
    }

    /// The current cost of `endpoints[index]`, for tests and debugging.
    pub fn cost(&self, index: usize) -> Option<f64> {
        let now = self.clock.now();
        self.estimates
            .get(index)
            .map(|e| e.cost(now, self.decay_ns))
    }

    /// Requests in flight to `endpoints[index]`.
    pub fn in_flight(&self, index: usize) -> Option<u32> {
        self.estimates.get(index).map(|e| e.in_flight)
    }

    fn fresh(&self) -> Estimate {
        Estimate {
            rtt_ns: duration_nanos(self.config.default_rtt) as f64,
            stamp: self.clock.now(),
            in_flight: 0,
        }
    }
}

impl<C: Clock, R: Rng> Algorithm for PeakEwma<C, R> {
    fn update(&mut self, _endpoints: &[Endpoint], previous: &[Option<usize>]) {
        let fresh = self.fresh();
        self.estimates = carry_over(&self.estimates, previous, || fresh);
    }

    fn pick(
        &mut self,
        endpoints: &[Endpoint],
        candidates: &Candidates<'_>,
        _ctx: &PickContext,
    ) -> Option<usize> {
        if self.estimates.len() < endpoints.len() {
            let fresh = self.fresh();
            self.estimates.resize(endpoints.len(), fresh);
        }
        let indices = candidates.indices();
        let n = indices.len() as u64;
        let (a, b) = match n {
            0 => return None,
            1 => return indices.first().copied(),
            _ => {
                let a = self.rng.below(n);
                let mut b = self.rng.below(n - 1);
                if b >= a {
                    b += 1;
                }
                (a, b)
            }
        };
        let a = *indices.get(usize::try_from(a).ok()?)?;
        let b = *indices.get(usize::try_from(b).ok()?)?;
        let now = self.clock.now();
        let cost = |i: usize| {
            self.estimates
                .get(i)
                .map_or(f64::INFINITY, |e| e.cost(now, self.decay_ns))
        };
        Some(if cost(b) < cost(a) { b } else { a })
    }

    fn on_start(&mut self, index: usize) {
        if let Some(e) = self.estimates.get_mut(index) {
            e.in_flight = e.in_flight.saturating_add(1);
        }
    }

    fn on_complete(&mut self, index: usize, latency: Duration) {
        let now = self.clock.now();
        let decay_ns = self.decay_ns;
        if let Some(e) = self.estimates.get_mut(index) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.observe(now, duration_nanos(latency) as f64, decay_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock::ManualClock, rng::SplitMix64};

    const MS: f64 = 1_000_000.0;

    fn setup(
        n: usize,
    ) -> (
        PeakEwma<ManualClock, SplitMix64>,
        ManualClock,
        Vec<Endpoint>,
    ) {
        let clock = ManualClock::new();
        let config = PeakEwmaConfig {
            default_rtt: Duration::from_millis(10),
            decay: Duration::from_secs(1),
        };
        let mut p2c = PeakEwma::new(config, clock.clone(), SplitMix64::new(5)).unwrap();
        let eps: Vec<Endpoint> = (0..n)
            .map(|i| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap()))
            .collect();
        p2c.update(&eps, &vec![None; n]);
        (p2c, clock, eps)
    }

    #[test]
    fn default_rtt_decays_over_time() {
        let (p2c, clock, _) = setup(1);
        assert_eq!(p2c.cost(0), Some(10.0 * MS + 1.0));
        clock.advance(Duration::from_secs(1));
        let cost = p2c.cost(0).unwrap();
        assert!(
            (cost - (10.0 * MS / std::f64::consts::E + 1.0)).abs() < 1.0,
            "{cost}"
        );
    }

    #[test]
    fn peaks_replace_and_lows_blend() {
        let (mut p2c, clock, _) = setup(1);
        p2c.on_start(0);
        assert_eq!(p2c.in_flight(0), Some(1));
        assert_eq!(p2c.cost(0), Some((10.0 * MS + 1.0) * 2.0));
        clock.advance(Duration::from_millis(100));
        p2c.on_complete(0, Duration::from_millis(400));
        assert_eq!(p2c.in_flight(0), Some(0));
        assert_eq!(
            p2c.cost(0),
            Some(400.0 * MS + 1.0),
            "a peak is taken at once"
        );
        // A fast response right away barely moves it; after a long gap it dominates.
        p2c.on_complete(0, Duration::from_millis(1));
        assert!(p2c.cost(0).unwrap() > 399.0 * MS);
        clock.advance(Duration::from_secs(5));
        p2c.on_complete(0, Duration::from_millis(1));
        let cost = p2c.cost(0).unwrap();
        assert!(cost < 5.0 * MS, "{cost}");
        // Completions never underflow the in-flight count.
        assert_eq!(p2c.in_flight(0), Some(0));
    }

    #[test]
    fn prefers_the_cheaper_of_two() {
        let (mut p2c, _clock, eps) = setup(2);
        p2c.on_complete(0, Duration::from_millis(500));
        let all = [0, 1];
        for _ in 0..20 {
            let pick = p2c.pick(&eps, &Candidates::new(0, &all), &PickContext::new());
            assert_eq!(pick, Some(1));
        }
        // In-flight requests raise the cost of the fast endpoint until it loses.
        for _ in 0..60 {
            p2c.on_start(1);
        }
        assert_eq!(
            p2c.pick(&eps, &Candidates::new(0, &all), &PickContext::new()),
            Some(0)
        );
    }

    #[test]
    fn spreads_load_between_equal_endpoints() {
        let (mut p2c, _clock, eps) = setup(4);
        let all = [0, 1, 2, 3];
        let mut counts = [0u32; 4];
        for _ in 0..400 {
            let i = p2c
                .pick(&eps, &Candidates::new(0, &all), &PickContext::new())
                .unwrap();
            p2c.on_start(i); // requests never finish: least-loaded wins
            counts[i] += 1;
        }
        assert!(
            counts.iter().all(|&c| (90..=110).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn state_follows_addresses_and_config_is_validated() {
        let (mut p2c, _clock, eps) = setup(2);
        p2c.on_start(1);
        let swapped = vec![eps[1].clone(), eps[0].clone()];
        p2c.update(&swapped, &[Some(1), Some(0)]);
        assert_eq!(p2c.in_flight(0), Some(1));
        assert_eq!(p2c.in_flight(1), Some(0));
        let one = [1];
        assert_eq!(
            p2c.pick(&swapped, &Candidates::new(0, &one), &PickContext::new()),
            Some(1)
        );
        let bad = PeakEwmaConfig {
            decay: Duration::ZERO,
            ..PeakEwmaConfig::default()
        };
        assert!(PeakEwma::new(bad, ManualClock::new(), SplitMix64::new(0)).is_err());
    }
}
