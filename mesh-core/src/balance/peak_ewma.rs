use std::{cmp::Ordering, time::Duration};

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
        decay_factor(elapsed / decay_ns)
    }

    /// Linkerd/Finagle's cost: decayed latency times (requests in flight + 1). The `+ 1.0`
    /// keeps in-flight counts meaningful once every estimate has decayed to nothing.
    fn cost(&self, now: Timestamp, decay_ns: f64) -> f64 {
        let rtt = self.rtt_ns * self.decay_weight(now, decay_ns);
        (rtt + 1.0) * (f64::from(self.in_flight) + 1.0)
    }

    /// How this estimate's latency compares with `other`'s at any time after both stamps.
    ///
    /// Both decay by the same factor from then on, so their order is fixed once the older one
    /// is decayed to the newer one's stamp: no clock needed. (A `now` before a stamp, which only
    /// a clock going backwards gives, would freeze that estimate instead.)
    fn latency_cmp(&self, other: &Self, decay_ns: f64) -> Ordering {
        match self.stamp.cmp(&other.stamp) {
            Ordering::Equal => cmp_f64(self.rtt_ns, other.rtt_ns),
            Ordering::Greater => {
                let elapsed = self.stamp.saturating_duration_since(other.stamp);
                cmp_decayed(self.rtt_ns, other.rtt_ns, elapsed, decay_ns)
            }
            Ordering::Less => {
                let elapsed = other.stamp.saturating_duration_since(self.stamp);
                cmp_decayed(other.rtt_ns, self.rtt_ns, elapsed, decay_ns).reverse()
            }
        }
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
///
/// A pick reads the clock only when it must: when one of the two candidates is both faster and
/// busier than the other. Otherwise one is at least as cheap at every moment (estimates decay
/// at the same rate), which the stored estimates alone tell. A request therefore usually pays
/// one clock read, at completion, where the new latency is blended in.
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
                let a = below(&mut self.rng, n);
                let mut b = below(&mut self.rng, n - 1);
                if b >= a {
                    b += 1;
                }
                (a, b)
            }
        };
        let a = *indices.get(usize::try_from(a).ok()?)?;
        let b = *indices.get(usize::try_from(b).ok()?)?;
        let (Some(ea), Some(eb)) = (self.estimates.get(a), self.estimates.get(b)) else {
            return Some(a);
        };
        // b wins only if strictly cheaper: cost = (latency + 1) * (in flight + 1).
        let latency = eb.latency_cmp(ea, self.decay_ns);
        let load = eb.in_flight.cmp(&ea.in_flight);
        Some(match (latency, load) {
            (Ordering::Less, Ordering::Less | Ordering::Equal)
            | (Ordering::Equal, Ordering::Less) => b,
            (Ordering::Greater | Ordering::Equal, Ordering::Greater | Ordering::Equal) => a,
            // One is faster, the other less busy: the costs at this moment decide.
            _ => {
                let now = self.clock.now();
                if eb.cost(now, self.decay_ns) < ea.cost(now, self.decay_ns) {
                    b
                } else {
                    a
                }
            }
        })
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

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Compares `fresh` with `stale` decayed by `elapsed`, i.e. with `stale * e^(-elapsed/decay)`,
/// computing the exponential only when cheap bounds on it cannot decide: the factor is at most
/// 1 and at least `1 - elapsed/decay`.
fn cmp_decayed(fresh: f64, stale: f64, elapsed: Duration, decay_ns: f64) -> Ordering {
    if fresh > stale {
        // Multiplying by a factor <= 1 never rounds above `stale`.
        return Ordering::Greater;
    }
    let x = duration_nanos(elapsed) as f64 / decay_ns;
    // The margin covers the rounding of both sides by far.
    if fresh < stale * (1.0 - x) * (1.0 - 1e-9) {
        return Ordering::Less;
    }
    cmp_f64(fresh, stale * decay_factor(x))
}

/// `e^(-x)` for `x >= 0`. Estimates of busy endpoints are updated microseconds apart, a tiny
/// fraction of the decay time; there the Taylor polynomial to `x^4` is exact to the last bit
/// (the next term is below `2^-53` for `x < 2^-10`) and much cheaper than `exp`.
#[inline]
fn decay_factor(x: f64) -> f64 {
    if x < 1.0 / 1024.0 {
        1.0 - x * (1.0 - x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0))))
    } else {
        (-x).exp()
    }
}

/// [`Rng::below`], drawing the same values from the same stream, without its division in
/// the common case: the rejection threshold (`2^64 mod bound`, below `bound`) is only needed
/// when the low half of the product falls below `bound` (Lemire's nearly divisionless method).
#[inline]
fn below<R: Rng>(rng: &mut R, bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let mut product = u128::from(rng.next_u64()) * u128::from(bound);
    // Truncation keeps exactly the low 64 bits, which is the point.
    #[allow(clippy::cast_possible_truncation)]
    if (product as u64) < bound {
        let threshold = bound.wrapping_neg() % bound;
        #[allow(clippy::cast_possible_truncation)]
        while (product as u64) < threshold {
            product = u128::from(rng.next_u64()) * u128::from(bound);
        }
    }
    (product >> 64) as u64
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
    fn decay_factor_is_the_exponential() {
        let mut rng = SplitMix64::new(31);
        for _ in 0..100_000 {
            let x = rng.next_f64() * 2f64.powi(-(rng.below(60) as i32));
            let (ours, libm) = (decay_factor(x), (-x).exp());
            assert!(
                (ours - libm).abs() <= 2.0 * f64::EPSILON * libm,
                "x = {x}: {ours} vs {libm}"
            );
        }
        assert_eq!(decay_factor(0.0), 1.0);
        assert_eq!(decay_factor(1.0), (-1.0f64).exp());
        assert_eq!(decay_factor(f64::INFINITY), 0.0);
    }

    #[test]
    fn decayed_comparison_matches_the_exponential() {
        let decay = 1e9;
        let mut rng = SplitMix64::new(23);
        for _ in 0..20_000 {
            let stale = rng.below(1_000_000) as f64;
            let elapsed = Duration::from_nanos(rng.below(3_000_000_000) >> rng.below(40));
            let x = duration_nanos(elapsed) as f64 / decay;
            let exact = stale * decay_factor(x);
            // Values right at, around and far from the decayed one.
            let near = [exact, exact * (1.0 + 1e-12), exact * (1.0 - 1e-12)];
            for fresh in near
                .into_iter()
                .chain([stale, stale + 1.0, 0.0, exact / 2.0])
            {
                assert_eq!(
                    cmp_decayed(fresh, stale, elapsed, decay),
                    cmp_f64(fresh, exact),
                    "fresh {fresh} stale {stale} elapsed {elapsed:?}"
                );
            }
        }
    }

    #[test]
    fn below_draws_what_rng_below_draws() {
        let mut fast = SplitMix64::new(3);
        let mut reference = SplitMix64::new(3);
        for bound in (0..2000u64).chain([u64::MAX, u64::MAX / 3 + 7, 1 << 63, (1 << 63) + 1]) {
            for _ in 0..3 {
                assert_eq!(below(&mut fast, bound), reference.below(bound), "{bound}");
            }
        }
        assert_eq!(fast, reference, "same number of values drawn");
    }

    /// The choice without the clock agrees with the costs at the current time, whatever the
    /// latencies, stamps and in-flight counts.
    #[test]
    fn choice_agrees_with_costs() {
        let clock = ManualClock::new();
        let config = PeakEwmaConfig {
            default_rtt: Duration::from_millis(10),
            decay: Duration::from_secs(1),
        };
        let mut p2c = PeakEwma::new(config, clock.clone(), SplitMix64::new(9)).unwrap();
        let eps: Vec<Endpoint> = (0..6)
            .map(|i| Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap()))
            .collect();
        p2c.update(&eps, &[None; 6]);
        let mut rng = SplitMix64::new(17);
        for step in 0..3000 {
            let i = rng.below(6) as usize;
            match rng.below(4) {
                0 => p2c.on_start(i),
                1 => p2c.on_complete(i, Duration::from_micros(rng.below(50_000))),
                2 => clock.advance(Duration::from_millis(rng.below(700))),
                _ => {
                    let pair = [i, (i + 1 + rng.below(5) as usize) % 6];
                    let chosen = p2c
                        .pick(&eps, &Candidates::new(0, &pair), &PickContext::new())
                        .unwrap();
                    let other = if chosen == pair[0] { pair[1] } else { pair[0] };
                    let (c, o) = (p2c.cost(chosen).unwrap(), p2c.cost(other).unwrap());
                    assert!(
                        c <= o * (1.0 + 1e-9),
                        "step {step}: chose cost {c} over {o}"
                    );
                }
            }
        }
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
