//! The tightness regularizers d and r of Zhu et al., "Improving the tightness of convex
//! relaxation bounds for training certifiably robust classifiers" (SPEC.md section 1).
//!
//! For a margin row c (`c = e_y - e_t`) back-substitution finds the relaxed lower bound
//! `p*_C = min c . f` over the relaxed network (Fast-Lin = DeepZ = CAP, CROWN, CROWN-IBP: every
//! ReLU replaced by its lower and upper line). The sign of the coefficient it ends with over
//! each value says where the minimum is attained (Proposition 1):
//! - the input: `delta0* = -eps sign(A_0)`, i.e. the corner `lo` where `A_0 > 0` and `hi` where
//!   `A_0 < 0` of the (clipped) box; where `A_0 = 0` every point is optimal and the clean `x` is
//!   kept (the paper leaves it open);
//! - each unstable ReLU (l < 0 < u): its upper line (intercept `delta* = -l u / (u - l)`) where
//!   the coefficient over its output is negative, its lower line (`delta* = 0`) otherwise.
//!
//! The real network evaluated at `x' = x + delta0*` gives (Eq. 2 and Section 4.3)
//! - `d = c . f(x') - p*_C`, which is >= 0 whenever `p*_C` is a sound bound (x' lies in the
//!   region), and 0 when the relaxation is exact;
//! - `r = (1 / sum_i |I_i|) sum_i [ sum_{j in I_i, delta*=0} |x'_ij| +
//!   sum_{j in I_i, delta*!=0} min(|x'_ij - l_ij|, |x'_ij - u_ij|) ]`, where `I_i` are the
//!   unstable neurons of ReLU layer i (by the same bounds l, u the relaxation used) and `x'_ij`
//!   the real pre-activations at x'; `r = 0` implies `p*_C` is the exact minimum. A neuron whose
//!   coefficient is exactly 0 counts as `delta* = 0`; with no unstable neuron `r = 0`.
//!
//! Both are differentiable in the weights: through `p*_C` (all bounds), through the forward
//! pass at x' and through l, u in r; the selections (`delta0*`, `delta*`, `I_i`) are
//! piecewise constant and carry no gradient.

use super::backsub::{Backsub, RowLines};
use super::interval::Interval;
use super::relaxation::{Engine, LowerLine, Method, Relaxation};
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::net::{numel, relu, Network, Op, ReluLower};
use crate::tensor::Tensor;

/// The methods whose relaxed optimum Proposition 1 describes, as `ironbound bounds
/// --regularizers` and training accept them.
pub const METHODS: [Method; 3] = [Method::Deepz, Method::Crown, Method::CrownIbp];

/// Whether d and r are defined for `method`.
pub fn supports(method: Method) -> bool {
    METHODS.contains(&method)
}

/// `Ok` for deepz, crown and crown-ibp; otherwise why not.
pub fn check_method(method: Method) -> Result<()> {
    if supports(method) {
        return Ok(());
    }
    let names: Vec<&str> = METHODS.iter().map(|m| m.name()).collect();
    Err(Error::input(format!(
        "the tightness regularizers need a relaxation with linear ReLU bounds and a back-substitution final pass ({}), not {method}",
        names.join(", ")
    )))
}

/// Everything about the relaxed optimum of each spec row, per sample: `[N, R]` unless said.
#[derive(Clone, Debug)]
pub struct Tightness {
    /// `p*_C`, the relaxation's lower bound (what `lower_bound` returns for the same inputs).
    pub lower: Tensor<2>,
    /// `c . f(x + delta0*)`: the real network at the relaxed optimum's input.
    pub relaxed_value: Tensor<2>,
    /// `relaxed_value - lower`.
    pub d: Tensor<2>,
    pub r: Tensor<2>,
    /// `x + delta0*`, `[N, R, F]` over the flattened input (detached).
    pub point: Tensor<3>,
    /// Per ReLU node (indexed by node): 1 where the neuron is unstable and its upper line is
    /// chosen (`delta* = -l u / (u - l)`), else 0, `[N, R, F]`.
    pub upper_line: Vec<Option<Tensor<3>>>,
    /// `sum_i |I_i|`, the number of unstable neurons, `[N, 1]`.
    pub unstable: Tensor<2>,
}

/// The final pass's lower line, when Proposition 1 applies to the relaxation.
pub fn linear_lower(relaxation: &Relaxation) -> Result<ReluLower> {
    match (relaxation.final_pass, relaxation.final_lower) {
        (Engine::BackSubstitution, LowerLine::Fixed(lower @ (ReluLower::Parallel | ReluLower::Adaptive | ReluLower::Zero))) => Ok(lower),
        _ => Err(Error::input(format!(
            "the tightness regularizers need linear ReLU bounds in a back-substitution final pass, not {:?} in a {:?} pass",
            relaxation.final_lower, relaxation.final_pass
        ))),
    }
}

/// d and r of every row of `spec` over `region` (the box around the clean inputs `x`), with the
/// relaxation's own intermediate bounds.
pub fn tightness(net: &Network, region: &Interval, x: &Tensor<4>, spec: &Spec, relaxation: &Relaxation) -> Result<Tightness> {
    let lower = linear_lower(relaxation)?;
    let inter = super::intermediate(net, region, relaxation)?;
    tightness_on(net, &inter.bounds, x, spec, lower)
}

/// d and r with given bounds of every ReLU input (`bounds[0]` is the input region): for
/// intermediate bounds found otherwise, such as the Cauchy-projected zonotope estimates of
/// DeepZ training (`zonotope::propagate_projected`; the final pass is then exact on them, as
/// in Wong et al.'s code, and d, r are estimates).
pub fn tightness_on(net: &Network, bounds: &[Option<Interval>], x: &Tensor<4>, spec: &Spec, lower: ReluLower) -> Result<Tightness> {
    if !matches!(lower, ReluLower::Parallel | ReluLower::Adaptive | ReluLower::Zero) {
        return Err(Error::input(format!("the tightness regularizers need linear ReLU lower lines, not {lower:?}")));
    }
    let region = bounds.first().and_then(|b| b.as_ref()).ok_or_else(|| Error::internal("regularizers: no input region"))?;
    let [n, ch, h, w] = region.lo.dims();
    let f0 = ch * h * w;
    if x.dims() != region.lo.dims() {
        return Err(Error::internal(format!("regularizers: inputs {:?} and region {:?} differ", x.dims(), region.lo.dims())));
    }
    let k_out = net.num_outputs();
    let [b, rows, cols] = spec.c.dims();
    if cols != k_out || (b != 1 && b != n) {
        return Err(Error::input(format!("spec is [{b}, {rows}, {cols}], expected [1 or {n}, R, {k_out}]")));
    }
    let mut lines: Vec<Option<RowLines>> = vec![None; net.nodes().len()];
    for (i, node) in net.nodes().iter().enumerate() {
        if matches!(node.op, Op::Relu) {
            let bi = bounds.get(node.inputs[0]).and_then(|b| b.as_ref()).ok_or_else(|| Error::internal(format!("regularizers: no bounds for ReLU node {i}")))?;
            lines[i] = Some(RowLines::from_lines(&relu::lines(&bi.lo, &bi.hi, lower)));
        }
    }
    let ctx = Backsub { net, bounds, lines: &lines, sound: None };
    let out = net.output_value();
    let (p, trace) = ctx.lower_bound_traced(vec![(out, spec.c.clone())], None, &|_| true);

    // The input of the relaxed optimum: a corner of the box per row (the clean input where the
    // coefficient vanishes).
    let flat = |t: &Tensor<4>| t.clone().detach().reshape([n, 1, f0]).expand([n, rows, f0]);
    let mut point = flat(x);
    if let Some((_, a0)) = trace.concretised.iter().find(|(v, _)| *v == 0) {
        let a0 = a0.clone().detach().expand([n, rows, f0]);
        point = point.mask_where(a0.clone().greater_elem(0.0), flat(&region.lo)).mask_where(a0.lower_elem(0.0), flat(&region.hi));
    }
    let values = net.forward_values(point.clone().reshape([n * rows, ch, h, w]));
    let outputs = values[out].clone().reshape([n, rows, k_out]);
    let relaxed_value = (outputs * spec.c.clone()).sum_dim(2).reshape([n, rows]);
    let d = relaxed_value.clone() - p.clone();

    let device = region.lo.device();
    let mut total = Tensor::<2>::zeros([n, rows], &device);
    let mut unstable_count = Tensor::<2>::zeros([n, 1], &device);
    let mut upper_line = vec![None; net.nodes().len()];
    for (i, node) in net.nodes().iter().enumerate() {
        if !matches!(node.op, Op::Relu) {
            continue;
        }
        let v = node.inputs[0];
        let f = numel(&net.shape(v));
        let bi = bounds[v].as_ref().unwrap_or_else(|| unreachable!("checked above"));
        let l = bi.lo.clone().reshape([n, 1, f]).expand([n, rows, f]);
        let u = bi.hi.clone().reshape([n, 1, f]).expand([n, rows, f]);
        let unstable = l.clone().detach().lower_elem(0.0).bool_and(u.clone().detach().greater_elem(0.0)).float();
        // A ReLU the pass never reached has coefficient 0: its neurons take the lower line.
        let upper = match &trace.relu[i] {
            Some(a) => a.clone().detach().lower_elem(0.0).float() * unstable.clone(),
            None => unstable.zeros_like(),
        };
        let lower_sel = unstable.clone() - upper.clone();
        let xp = values[v].clone().reshape([n, rows, f]);
        let near = (xp.clone() - l).abs().min_pair((xp.clone() - u).abs());
        let dist = upper.clone() * near + lower_sel * xp.abs();
        total = total + dist.sum_dim(2).reshape([n, rows]);
        unstable_count = unstable_count + unstable.slice([0..n, 0..1, 0..f]).sum_dim(2).reshape([n, 1]);
        upper_line[i] = Some(upper);
    }
    let r = total / unstable_count.clone().clamp_min(1.0);
    Ok(Tightness { lower: p, relaxed_value, d, r, point, upper_line, unstable: unstable_count })
}
