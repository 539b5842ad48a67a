//! Losses on logits and on certified margin bounds, shared by training, attacks and bench.

use crate::tensor::{from_vec, Device, Tensor};
use burn::tensor::activation::log_softmax;

/// One-hot rows `[N, K]` for labels.
pub fn one_hot(labels: &[usize], k: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0.0f32; labels.len() * k];
    for (i, &y) in labels.iter().enumerate() {
        v[i * k + y] = 1.0;
    }
    from_vec(v, [labels.len(), k], device)
}

/// Mean cross-entropy of logits `[N, K]` against one-hot targets.
pub fn cross_entropy(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    let n = logits.dims()[0] as f64;
    cross_entropy_sum(logits, one_hot) / n
}

/// Summed cross-entropy: unlike the mean, no sample's gradient depends on the batch size.
pub fn cross_entropy_sum(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * one_hot).sum().neg()
}

/// The robust loss on elided margin lower bounds `lb` `[N, K-1]`: `CE(-[0, lb], 0)`, the
/// cross-entropy of the worst-case logits (label logit 0, others -lb), mean over the batch.
pub fn robust_cross_entropy(margin_lower: Tensor<2>) -> Tensor<1> {
    let [n, _] = margin_lower.dims();
    let like = (&margin_lower.device(), margin_lower.dtype());
    let zero = Tensor::zeros([n, 1], like);
    let worst = Tensor::cat(vec![zero, margin_lower.neg()], 1);
    let first = Tensor::cat(vec![Tensor::ones([n, 1], like), Tensor::zeros([n, worst.dims()[1] - 1], like)], 1);
    cross_entropy(worst, first)
}

/// Predicted classes of logits `[N, K]`.
pub fn predictions(logits: Tensor<2>) -> Vec<usize> {
    let k = logits.dims()[1];
    let v = crate::tensor::to_vec(logits);
    v.chunks(k.max(1))
        .map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (j, &x)| if x > best.1 { (j, x) } else { best }).0)
        .collect()
}
