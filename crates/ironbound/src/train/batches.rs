//! Training data: the train/evaluation split, the per-epoch shuffle, batches and data
//! augmentation. Every random choice comes from a SplitMix64 stream derived from the seed and
//! the epoch, so a resumed run sees exactly the batches an uninterrupted one would.

use super::config::{EvalSplit, Resolved};
use crate::data::{self, DataOptions, Dataset, Split};
use crate::error::Result;
use crate::net::init::SplitMix64;
use std::ops::Range;

/// Random streams, one per purpose.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Shuffle = 1,
    Augment = 2,
    /// Per-step randomness of the loss: PGD random starts, random projections.
    Step = 3,
    /// The loss's randomness in the loss-landscape measurements (train/landscape.rs), per
    /// measured epoch: never one of the streams training draws from.
    Landscape = 4,
}

/// The generator of stream `which` for `index` (an epoch or a global step) of run `seed`.
pub fn rng(seed: u64, which: Stream, index: u64) -> SplitMix64 {
    let mut base = SplitMix64::new(seed ^ ((which as u64) << 56));
    let a = base.next_u64();
    SplitMix64::new(a ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// A seed for the randomness of the loss at global step `step`.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    rng(seed, Stream::Step, step).next_u64()
}

pub struct TrainData {
    pub train: Dataset,
    pub eval: Dataset,
    pub eval_split: EvalSplit,
}

/// Splits loaded data as the config asks: with `holdout`, the last `holdout_fraction` of the
/// training split becomes the evaluation set; `train_n`/`eval_n` keep prefixes.
pub fn prepare(r: &Resolved, mut train: Dataset, test: Option<Dataset>) -> TrainData {
    let c = &r.config;
    let mut eval = match (c.eval_split, test) {
        (EvalSplit::Test, Some(test)) => test,
        _ => {
            let n = train.len();
            let held = if n >= 2 { ((n as f64 * c.holdout_fraction).round() as usize).clamp(1, n - 1) } else { 0 };
            let keep = n - held;
            let held: Vec<usize> = (keep..n).collect();
            let eval = train.subset(&held);
            train.truncate(keep);
            eval
        }
    };
    if let Some(n) = c.train_n {
        train.truncate(n);
    }
    if let Some(n) = c.eval_n {
        eval.truncate(n);
    }
    TrainData { train, eval, eval_split: c.eval_split }
}

/// Loads the dataset named by the config.
pub fn load(r: &Resolved) -> Result<TrainData> {
    let opts = DataOptions { data_dir: r.config.data_dir.as_ref().map(Into::into), ..Default::default() };
    let train = data::load(r.dataset, Split::Train, &opts)?;
    let test = match r.config.eval_split {
        EvalSplit::Test => Some(data::load(r.dataset, Split::Test, &opts)?),
        EvalSplit::Holdout => None,
    };
    Ok(prepare(r, train, test))
}

/// The order of the training samples in 0-based epoch `epoch` (Fisher-Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut r = rng(seed, Stream::Shuffle, epoch as u64);
    for i in (1..n).rev() {
        let j = r.below(i as u64 + 1) as usize;
        order.swap(i, j.min(i));
    }
    order
}

/// Random crops and flips.
#[derive(Clone, Copy, Debug)]
pub struct Augment {
    pub padding: usize,
    pub flip: bool,
}

impl Augment {
    /// Writes one augmented CHW image: a crop of the zero-padded image and, with probability
    /// 1/2, a horizontal flip.
    fn apply(&self, shape: [usize; 3], src: &[f32], rng: &mut SplitMix64, out: &mut Vec<f32>) {
        let [c, h, w] = shape;
        let p = self.padding as i64;
        let dy = rng.below(2 * p as u64 + 1) as i64 - p;
        let dx = rng.below(2 * p as u64 + 1) as i64 - p;
        let flip = self.flip && rng.uniform() < 0.5;
        for ch in 0..c {
            for i in 0..h as i64 {
                for j in 0..w as i64 {
                    let jj = if flip { w as i64 - 1 - j } else { j };
                    let (si, sj) = (i + dy, jj + dx);
                    let v = if si >= 0 && sj >= 0 && (si as usize) < h && (sj as usize) < w {
                        src[ch * h * w + si as usize * w + sj as usize]
                    } else {
                        0.0
                    };
                    out.push(v);
                }
            }
        }
    }
}

/// Pixels and labels of the samples `indices`, augmented when asked.
pub fn gather(ds: &Dataset, indices: &[usize], augment: Option<(&Augment, &mut SplitMix64)>) -> (Vec<f32>, Vec<usize>) {
    let mut pixels = Vec::with_capacity(indices.len() * ds.sample_len());
    let labels = indices.iter().map(|&i| usize::from(ds.labels[i])).collect();
    match augment {
        Some((aug, rng)) => {
            for &i in indices {
                aug.apply(ds.shape, ds.image(i), rng, &mut pixels);
            }
        }
        None => {
            for &i in indices {
                pixels.extend_from_slice(ds.image(i));
            }
        }
    }
    (pixels, labels)
}

/// `n` rows split into at most `parts` contiguous, non-empty, near-equal ranges (the first
/// ones one longer), for data-parallel shards of a batch.
pub fn shards(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|j| {
            let len = base + usize::from(j < extra);
            start += len;
            start - len..start
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// Runs `f(j, rows)` for every shard in parallel on rayon's pool and returns the results in
/// shard order. The pool is where the kernels' own parallel loops run too: with the shards on
/// threads of their own, T shards and the pool's T workers competed for T cores.
pub fn in_parallel<T: Send>(shards: Vec<Range<usize>>, f: &(dyn Fn(usize, Range<usize>) -> Result<T> + Sync)) -> Result<Vec<T>> {
    use rayon::prelude::*;
    shards.into_par_iter().enumerate().map(|(j, rows)| f(j, rows)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order() {
        assert_eq!(shards(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(shards(2, 8), vec![0..1, 1..2]);
        assert_eq!(shards(5, 1), vec![0..5]);
        assert_eq!(shards(0, 4), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn shuffles_are_permutations_that_depend_on_seed_and_epoch() {
        let a = epoch_order(100, 1, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
    }

    #[test]
    fn crop_without_shift_and_flip_is_identity() {
        let aug = Augment { padding: 0, flip: false };
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut out = Vec::new();
        aug.apply([1, 3, 4], &src, &mut SplitMix64::new(0), &mut out);
        assert_eq!(out, src);
    }

    #[test]
    fn crops_keep_shape_and_pad_with_zeros() {
        let aug = Augment { padding: 2, flip: true };
        let src = vec![1.0f32; 3 * 8 * 8];
        let mut rng = SplitMix64::new(5);
        let mut seen_zero = false;
        for _ in 0..20 {
            let mut out = Vec::new();
            aug.apply([3, 8, 8], &src, &mut rng, &mut out);
            assert_eq!(out.len(), src.len());
            assert!(out.iter().all(|&v| v == 0.0 || v == 1.0));
            seen_zero |= out.contains(&0.0);
        }
        assert!(seen_zero);
    }
}
