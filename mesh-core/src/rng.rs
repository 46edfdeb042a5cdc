//! Randomness as an input: the [`Rng`] trait and the seeded [`SplitMix64`] generator.
//!
//! Random load balancing, power-of-two choices and backoff jitter take their randomness from an
//! injected [`Rng`], so a test that seeds it gets the same picks every run and a fuzzer can replay
//! a failure. None of this is cryptographic: it only has to be fast and well spread.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
};

/// A source of uniformly distributed 64-bit values.
///
/// Implement [`next_u64`](Self::next_u64); the other methods derive from it. Implemented for
/// `&mut R` and `Box<R>` so generators can be lent or type-erased.
pub trait Rng {
    /// The next uniformly distributed value.
    fn next_u64(&mut self) -> u64;

    /// A uniform value in `0..bound`, or 0 when `bound` is 0.
    ///
    /// Uses Lemire's multiply-and-reject method, so there is no modulo bias.
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Values of the low half under `threshold` would over-represent some results.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            // Truncation keeps exactly the low 64 bits, which is the point.
            #[allow(clippy::cast_possible_truncation)]
            let low = product as u64;
            if low >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform value in `[0, 1)` with 53 bits of precision.
    fn next_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

impl<R: Rng + ?Sized> Rng for &mut R {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

impl<R: Rng + ?Sized> Rng for Box<R> {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// Steele, Lea and Flood's SplitMix64: one `u64` of state, any seed (including 0) is fine.
///
/// Seed it with a constant in tests and with [`SplitMix64::from_entropy`] in production so that
/// replicas of one service do not all make the same "random" choices.
///
/// ```
/// use mesh_core::rng::{Rng, SplitMix64};
/// let mut a = SplitMix64::new(7);
/// let mut b = SplitMix64::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with the given seed.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the standard library's per-process random hash keys (which come
    /// from the operating system), so no extra dependency is needed.
    pub fn from_entropy() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x6d65_7368); // any input; the keys are the entropy
        Self::new(hasher.finish())
    }
}

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }
}

/// The SplitMix64 finaliser: a bijective mixer that spreads every input bit over the output.
///
/// Used on its own to derive well-spread values from counters and hashes.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = SplitMix64::new(1);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            let v = rng.below(6);
            counts[usize::try_from(v).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
        assert!(rng.below(u64::MAX) < u64::MAX);
    }

    #[test]
    fn next_f64_is_in_unit_interval() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..1000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn works_through_mut_refs_and_boxes() {
        fn draw(mut rng: impl Rng) -> u64 {
            rng.next_u64()
        }
        let mut inner = SplitMix64::new(9);
        let expected = SplitMix64::new(9).next_u64();
        assert_eq!(draw(&mut inner), expected);
        let mut boxed: Box<dyn Rng> = Box::new(SplitMix64::new(9));
        assert_eq!(boxed.next_u64(), expected);
        let _ = SplitMix64::from_entropy().next_u64();
    }
}
