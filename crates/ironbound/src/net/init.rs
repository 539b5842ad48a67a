//! Deterministic random numbers and weight initialisation.
//!
//! The generator is SplitMix64 with the exact stream definition of shared/bench/WORKLOADS.md,
//! so benchmark weights and inputs are bit-identical to the PyTorch reference's.

/// Stream `s` of SplitMix64: output i is `mix(s + (i + 1) * GOLDEN)`.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    pub fn new(stream: u64) -> Self {
        SplitMix64 { state: stream }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform double in [0, 1) from the top 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `n` uniforms in [0, 1), rounded to f32 once.
    pub fn uniforms(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform() as f32).collect()
    }

    /// `n` standard normals by Box-Muller on consecutive pairs, computed in double.
    pub fn normals_f64(&mut self, n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let (u0, u1) = (self.uniform(), self.uniform());
            let r = (-2.0 * (1.0 - u0).ln()).sqrt();
            let t = 2.0 * std::f64::consts::PI * u1;
            out.push(r * t.cos());
            out.push(r * t.sin());
        }
        out.truncate(n);
        out
    }

    /// Uniform integers in [0, k) as `floor(k u)`.
    pub fn below(&mut self, k: u64) -> u64 {
        ((k as f64) * self.uniform()).floor() as u64
    }
}

/// PyTorch's default initialisation of `nn.Linear`/`nn.Conv2d` (Kaiming-uniform with
/// a = sqrt(5)): weights and biases uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)].
pub fn pytorch_default(rng: &mut SplitMix64, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    (0..n).map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32).collect()
}

/// Kaiming-normal weights scaled by `gain`: `gain * sqrt(2 / fan_in) * N(0, 1)`.
pub fn kaiming_normal(rng: &mut SplitMix64, n: usize, fan_in: usize, gain: f64) -> Vec<f32> {
    let scale = gain * (2.0 / fan_in as f64).sqrt();
    rng.normals_f64(n).into_iter().map(|z| (scale * z) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_published_stream() {
        let mut r = SplitMix64::new(1);
        assert_eq!(r.next_u64(), 0x910a2dec89025cc1);
        assert_eq!(r.next_u64(), 0xbeeb8da1658eec67);
        assert_eq!(r.next_u64(), 0xf893a2eefb32555e);
    }

    #[test]
    fn uniforms_and_normals_match_workloads_md() {
        let u = SplitMix64::new(1).uniforms(3);
        for (a, b) in u.iter().zip([0.5665615752f32, 0.7457817573, 0.9710027536]) {
            assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        }
        let z = SplitMix64::new(100).normals_f64(4);
        for (a, b) in z.iter().zip([0.541187541, 0.0497537196, -0.0157437648, 0.7468458728]) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
    }
}
