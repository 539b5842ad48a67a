//! The rules every single-input affine layer provides. The bound engines build all their
//! transformers for such layers from these five operations.

use super::Shape;
use crate::error::Result;
use crate::tensor::Tensor;

pub trait AffineLayer {
    /// Output shape for a given input shape, or an error naming the mismatch.
    fn output_shape(&self, input: &Shape) -> Result<Shape>;

    /// y = W x + b on a batch `[R, C, H, W]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;

    /// W x without the bias (zonotope generators, differences of points).
    fn linear(&self, x: Tensor<4>) -> Tensor<4>;

    /// |W| r for a batch of non-negative radii (interval propagation).
    fn abs_linear(&self, r: Tensor<4>) -> Tensor<4>;

    /// Back-substitution: rows `a` `[R, out...]` of a linear form over the output become
    /// `a W`, rows over the input `[R, input...]`.
    fn transpose(&self, a: Tensor<4>, input: &Shape) -> Tensor<4>;

    /// The constant `a b` picked up when back-substituting rows `a` `[R, out...]`: `[R]`.
    fn bias_term(&self, a: &Tensor<4>) -> Option<Tensor<1>>;

    /// True when the layer maps each input element to one output element (then interval
    /// propagation through it is exact).
    fn is_elementwise(&self) -> bool {
        false
    }

    /// An upper bound on the number of rounded operations behind any one entry of `forward`
    /// (products and the bias) or of `transpose`, plus those that derive the layer's float
    /// constants from its parameters. Float-sound bounds (`bounds/sound.rs`) pad every result
    /// by gamma(n) = n u / (1 - n u) times the same sum taken over absolute values, which bounds
    /// the rounding error of any summation order (Higham, Accuracy and Stability, Section 3.1).
    /// The default, every input element plus every output element plus one, holds for any
    /// affine map; layers override it with their fan-in and fan-out.
    fn max_terms(&self, input: &Shape) -> usize {
        let out = self.output_shape(input).map(|s| s.iter().product::<usize>()).unwrap_or(usize::MAX / 4);
        input.iter().product::<usize>().saturating_add(out).saturating_add(1)
    }

    /// The same bound for `transpose` alone (back-substitution): often far below the
    /// forward fan-in (a linear layer 784 -> 100 sums 100 products per entry of `a W`).
    fn transpose_terms(&self, input: &Shape) -> usize {
        self.max_terms(input)
    }
}
