use std::sync::Arc;

use super::{
    BalanceConfigError, Balancer, LoadBalancer, Maglev, MaglevConfig, PeakEwma, PeakEwmaConfig,
    PriorityConfig, RingHash, RingHashConfig, WeightAware, WeightedRandom,
};
use crate::{
    clock::Clock,
    rng::{SplitMix64, mix64},
};

/// Which balancing algorithm a service uses, as a `DestinationRule`'s `loadBalancer` says.
///
/// [`build`](Self::build) turns it into a boxed [`Balancer`], so `mesh-client` can hold every
/// service's balancer behind one type whatever its policy.
///
/// ```
/// use std::sync::Arc;
/// use mesh_core::balance::{Policy, PriorityConfig};
/// use mesh_core::clock::SystemClock;
///
/// let lb = Policy::default().build(PriorityConfig::default(), Arc::new(SystemClock), 42)?;
/// assert!(lb.endpoints().is_empty());
/// # Ok::<(), mesh_core::balance::BalanceConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// [`WeightAware`]: [`RoundRobin`](super::RoundRobin) when all weights are equal, else
    /// [`WeightedFair`](super::WeightedFair) (Istio's `ROUND_ROBIN`; weights are honoured as
    /// in Envoy, exactly over each period of the total weight).
    RoundRobin,
    /// [`PeakEwma`] power of two choices (Istio's `LEAST_REQUEST`; Linkerd's default). With
    /// uniform latencies it is least-request.
    #[default]
    LeastRequest,
    /// [`PeakEwma`] with explicit settings.
    LeastRequestWith(PeakEwmaConfig),
    /// [`WeightedRandom`] (Istio's `RANDOM`).
    Random,
    /// [`RingHash`] consistent hashing.
    RingHash(RingHashConfig),
    /// [`Maglev`] consistent hashing.
    Maglev(MaglevConfig),
}

impl Policy {
    /// True for the consistent-hash policies, for which the request layer should compute a
    /// [`HashKey`](super::HashKey).
    pub fn uses_hash_key(&self) -> bool {
        matches!(self, Self::RingHash(_) | Self::Maglev(_))
    }

    /// Builds the balancer. `seed` drives all its randomness (and the round-robin start), so a
    /// fixed seed gives reproducible picks; use a random one in production
    /// ([`SplitMix64::from_entropy`]).
    pub fn build(
        &self,
        priority: PriorityConfig,
        clock: Arc<dyn Clock + Send + Sync>,
        seed: u64,
    ) -> Result<Box<dyn Balancer + Send>, BalanceConfigError> {
        priority.validate()?;
        let rng = SplitMix64::new(seed);
        Ok(match *self {
            Self::RoundRobin => {
                Box::new(LoadBalancer::new(WeightAware::new(mix64(seed)), priority))
            }
            Self::LeastRequest => Box::new(LoadBalancer::new(
                PeakEwma::new(PeakEwmaConfig::default(), clock, rng)?,
                priority,
            )),
            Self::LeastRequestWith(config) => Box::new(LoadBalancer::new(
                PeakEwma::new(config, clock, rng)?,
                priority,
            )),
            Self::Random => Box::new(LoadBalancer::new(WeightedRandom::new(rng), priority)),
            Self::RingHash(config) => Box::new(LoadBalancer::new(RingHash::new(config)?, priority)),
            Self::Maglev(config) => Box::new(LoadBalancer::new(Maglev::new(config)?, priority)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::{
        balance::{HashKey, PickContext},
        clock::ManualClock,
        model::Endpoint,
    };

    fn eps(weights: &[u32]) -> Arc<[Endpoint]> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr: SocketAddr = format!("10.0.0.{}:80", i + 1).parse().unwrap();
                Endpoint::new(addr).with_weight(w)
            })
            .collect()
    }

    fn build(policy: Policy) -> Box<dyn Balancer + Send> {
        policy
            .build(PriorityConfig::default(), Arc::new(ManualClock::new()), 1)
            .unwrap()
    }

    #[test]
    fn every_policy_picks_from_the_set() {
        for policy in [
            Policy::RoundRobin,
            Policy::LeastRequest,
            Policy::LeastRequestWith(PeakEwmaConfig::default()),
            Policy::Random,
            Policy::RingHash(RingHashConfig::default()),
            Policy::Maglev(MaglevConfig::default()),
        ] {
            let mut lb = build(policy);
            assert_eq!(lb.pick(&PickContext::new()), None, "{policy:?}");
            lb.update(eps(&[1, 1, 1]));
            let ctx = PickContext::with_hash(HashKey::from_bytes(b"k"));
            let i = lb.pick(&ctx).unwrap();
            assert!(i < 3);
            if policy.uses_hash_key() {
                assert_eq!(lb.pick(&ctx), Some(i), "{policy:?}");
            }
        }
    }

    #[test]
    fn round_robin_policy_honours_weights() {
        let mut lb = build(Policy::RoundRobin);
        lb.update(eps(&[3, 1]));
        let mut counts = [0; 2];
        for _ in 0..40 {
            counts[lb.pick(&PickContext::new()).unwrap()] += 1;
        }
        assert_eq!(counts, [30, 10]);
        lb.update(eps(&[2, 2]));
        let picks: Vec<_> = (0..4)
            .filter_map(|_| lb.pick(&PickContext::new()))
            .collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2);
    }

    #[test]
    fn bad_configs_are_refused() {
        let clock: Arc<dyn Clock + Send + Sync> = Arc::new(ManualClock::new());
        let bad_priority = PriorityConfig {
            panic_threshold_percent: 200,
            ..PriorityConfig::default()
        };
        assert!(
            Policy::Random
                .build(bad_priority, clock.clone(), 0)
                .is_err()
        );
        let bad = Policy::Maglev(MaglevConfig { table_size: 100 });
        assert!(bad.build(PriorityConfig::default(), clock, 0).is_err());
    }
}
