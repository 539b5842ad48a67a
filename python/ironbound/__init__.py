"""ironbound: certified training and verification of ReLU networks, from Python.

The same library as the ``ironbound`` command, so results equal the CLI's bit for bit::

    import numpy as np, ironbound
    m = ironbound.load("model.onnx")               # or a native .safetensors
    b = m.bounds(x, 0.1, method="crown", labels=y, clip=(0.0, 1.0))
    b["lower"], b["upper"], b["margin_lower"]      # float32 [N, K]
    r = ironbound.certify(m, x, y, 0.1, methods=["ibp", "crown"], pgd=20)
    r["certified_accuracy"]["crown"]

Inputs ``x`` are float32 arrays ``[N, C, H, W]`` or ``[N, C*H*W]`` (numpy arrays, or anything
with ``__dlpack__`` or ``__array__``, such as CPU torch tensors), read in place without a copy;
they must be C-contiguous (pass ``np.ascontiguousarray(x)`` otherwise: ironbound never copies
behind your back). Labels ``y`` are integer arrays ``[N]``. Bad input raises ``TypeError``
(wrong dtype or type) or ``ValueError`` (shape, NaN, range, unknown method, unreadable file,
... with the CLI's one-line message); other failures raise ``RuntimeError``. Long calls release
the GIL and stop at Ctrl-C (``KeyboardInterrupt``) after the batch in flight.

See docs/python.md for the whole API.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _ironbound
from ._ironbound import __version__

__all__ = ["Model", "load", "certify", "merge", "verify", "train", "dataset", "__version__"]

PathLike = Union[str, "os.PathLike[str]"]


def _array(value: Any, name: str) -> np.ndarray:
    """``value`` as a numpy array without copying: DLPack first (the zero-copy protocol torch,
    JAX and CuPy share), then ``__array__``/sequences through ``np.asarray``."""
    if isinstance(value, np.ndarray):
        return value
    try:
        if hasattr(value, "__dlpack__"):
            return np.from_dlpack(value)
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError, BufferError) as e:
        raise TypeError(f"{name}: cannot be read as an array ({type(value).__name__}): {e}") from e


def _inputs(x: Any, name: str = "x") -> np.ndarray:
    a = _array(x, name)
    if a.dtype != np.float32:
        raise TypeError(f"{name}: has dtype {a.dtype}, expected float32 (convert with {name}.astype(np.float32))")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: is not C-contiguous; pass np.ascontiguousarray({name})")
    return a


def _labels(y: Any, name: str) -> np.ndarray:
    a = _array(y, name)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: has dtype {a.dtype}, expected an integer array (int64)")
    # Labels are small: a narrower integer type is widened (a copy of N values), int64 is
    # read in place.
    return np.ascontiguousarray(a, dtype=np.int64)


def _clip(clip: Optional[Sequence[float]]) -> Optional[Tuple[float, float]]:
    if clip is None:
        return None
    values = tuple(float(v) for v in clip)
    if len(values) != 2:
        raise ValueError(f"clip takes two values (MIN, MAX), got {len(values)}")
    return values[0], values[1]


def _seed(seed: Any) -> int:
    """``seed=``: the CLI's ``--seed`` (an integer in [0, 2**64))."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    value = int(seed)
    if not 0 <= value < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {value}")
    return value


def _shard(shard: Optional[Sequence[int]]) -> Optional[Tuple[int, int]]:
    """``shard=(I, N)``: the CLI's ``--shard I/N``."""
    if shard is None:
        return None
    values = tuple(shard)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise TypeError(f"shard: expected a pair of integers (I, N), got {shard!r}")
    return int(values[0]), int(values[1])


def _methods(methods: Union[str, Sequence[str]]) -> str:
    if isinstance(methods, str):
        return methods
    return ",".join(methods)


class Model:
    """A network read by :func:`load` (ONNX or native safetensors)."""

    __slots__ = ("_net",)

    def __init__(self, net: _ironbound.Model) -> None:
        self._net = net

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """(channels, height, width) of one input."""
        return self._net.input_shape

    @property
    def num_outputs(self) -> int:
        """Number of outputs (classes)."""
        return self._net.num_outputs

    @property
    def path(self) -> str:
        """The file the model was read from."""
        return os.fspath(self._net.path)

    def __repr__(self) -> str:
        return repr(self._net)

    def bounds(
        self,
        x: Any,
        eps: float,
        method: str = "crown",
        labels: Any = None,
        clip: Optional[Sequence[float]] = None,
        timeout: Optional[float] = None,
        batch_size: int = 256,
        seed: int = 0,
        sound: bool = False,
        regularizers: bool = False,
    ) -> Dict[str, np.ndarray]:
        """Bounds on the outputs over the l-infinity ball of radius ``eps`` around each row of
        ``x``, intersected with ``clip=(MIN, MAX)`` when given: what ``ironbound bounds``
        writes.

        Returns a dict of float32 arrays ``[N, K]``: ``lower`` and ``upper``, and with
        ``labels`` (int ``[N]``) ``margin_lower``, a lower bound on ``f_y - f_j`` with the
        specification folded into the last layer (column ``y`` is 0). ``method`` is any
        relaxation of ``ironbound bounds --method`` (ibp, crown, deepz, alpha-crown,
        lp-triangle, milp, one-step, random-slope, ...); ``timeout`` is the per-sample budget of
        ``milp`` in seconds. ``seed`` (the CLI's ``--seed``) seeds the random slopes of
        ``one-step`` and ``random-slope``: row i's come from (seed, i), whatever the batch size;
        ``one-step`` needs ``labels``. ``sound=True`` is ``--sound``: float-sound bounds, valid
        for the real-valued network over the region with the exact decimal ``eps`` and ``clip``.
        ``regularizers=True`` is ``--regularizers`` (deepz, crown, crown-ibp; needs ``labels``):
        the dict also holds ``reg_d`` and ``reg_r`` ``[N, K]``, the tightness regularizers of
        each margin row. Equal, bit for bit, to the CLI's ``.npz`` for the same arguments (and the same
        ``batch_size``, the CLI's ``--batch-size``).
        """
        y = None if labels is None else _labels(labels, "labels")
        return self._net.bounds(_inputs(x), float(eps), method, y, _clip(clip), timeout, int(batch_size), _seed(seed), bool(sound), bool(regularizers))

    def forward(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """The model's outputs (logits), float32 ``[N, K]``, for the rows of ``x``."""
        return self._net.forward(_inputs(x), int(batch_size))


def load(path: PathLike, normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> Model:
    """Reads a model: ONNX (``.onnx``) or ironbound's native ``.safetensors``.

    ``normalize=(mean, std)`` (per-channel lists) prepends ``(x - mean) / std``, as the CLI's
    ``--normalize``, for models exported without their input normalisation.
    """
    if normalize is not None:
        mean, std = normalize
        normalize = ([float(v) for v in mean], [float(v) for v in std])
    return Model(_ironbound.load(os.fspath(path), normalize))


def certify(
    model: Model,
    x: Any,
    y: Any,
    eps: float,
    methods: Union[str, Sequence[str]] = ("ibp", "crown"),
    pgd: Optional[int] = None,
    clip: Optional[Sequence[float]] = (0.0, 1.0),
    timeout: Optional[float] = None,
    batch_size: int = 100,
    pgd_restarts: int = 1,
    cascade: Optional[Union[str, Sequence[str]]] = None,
    shard: Optional[Tuple[int, int]] = None,
    seed: int = 0,
    fast: bool = False,
) -> Dict[str, Any]:
    """Clean, certified and PGD accuracy of ``model`` on the samples ``(x, y)``.

    Returns the dict ``ironbound certify`` writes as report.json for the same samples: ``n``,
    ``eps``, ``clean_accuracy``, ``certified_accuracy`` (per method), ``pgd_accuracy`` (with
    ``pgd`` steps), ``outcomes``, ``soundness_conflicts``, ``seconds``, ``clip`` and, for
    solver-based methods, ``timeout_seconds``. A sample is certified when it is classified
    correctly and every margin lower bound off its label is > 0. ``methods`` is a list (or a
    comma-separated string) of ``--method`` names (relaxations, lp-triangle, lp-parallelogram,
    milp, colt, ...); ``cascade`` adds one more method that tries the listed ones in order per
    sample. ``clip=None`` is the CLI's ``--no-clip``; ``timeout`` is the per-sample budget of
    solver-based methods in seconds; ``seed`` (``--seed``) seeds the random slopes of
    ``one-step`` and ``random-slope`` (sample i's come from (seed, i)). Certificates are
    float-sound unless ``fast=True`` (the CLI's ``--fast``); the report's ``sound`` says which.

    ``shard=(I, N)`` is the CLI's ``--shard I/N``: pass all the samples, and only the I-th of N
    contiguous, nearly equal slices of them is evaluated (1 <= I <= N; the first ``len(y) % N``
    slices get one sample more). The report then has a ``shard`` object, and :func:`merge`
    turns the N reports into the unsharded one.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model: expected an ironbound.Model (from ironbound.load), got {type(model).__name__}")
    cascade_list = None if cascade is None else _methods(cascade)
    return _ironbound.certify(
        model._net,
        _inputs(x),
        _labels(y, "y"),
        float(eps),
        _methods(methods),
        pgd,
        _clip(clip),
        timeout,
        int(batch_size),
        int(pgd_restarts),
        cascade_list,
        _shard(shard),
        _seed(seed),
        bool(fast),
    )


def merge(reports: Sequence[Union[Mapping[str, Any], PathLike]], out: Optional[PathLike] = None) -> Any:
    """Merges shard outputs into what one unsharded run writes, as ``ironbound merge`` does
    (the same library function).

    ``reports`` are the N reports of ``certify(..., shard=(I, N))`` or ``ironbound certify
    --shard I/N``, in any order: dicts, or paths of their report.json files (paths of
    ``verify --instances --shard`` results.csv files work too). Returns the merged report dict
    (every accuracy recomputed from the shards' counts, ``seconds`` summed), or for results.csv
    shards the merged text. With ``out`` it is also written there, atomically, as ``ironbound
    merge --out`` writes it. Missing, overlapping or mismatched shards raise ``ValueError``.
    """
    if isinstance(reports, (str, bytes, os.PathLike, Mapping)):
        raise TypeError("reports: expected a list of shard reports (dicts or paths)")
    files = []
    for i, r in enumerate(reports):
        if isinstance(r, Mapping):
            files.append((f"reports[{i}]", json.dumps(r, allow_nan=False)))
        elif isinstance(r, (str, os.PathLike)):
            files.append((os.fspath(r), None))  # read by the library, as the CLI reads it
        else:
            raise TypeError(f"reports[{i}]: expected a report dict or a path, got {type(r).__name__}")
    return _ironbound.merge(files, None if out is None else os.fspath(out))


def verify(model: Union[Model, PathLike], property: PathLike, timeout: float = 300.0, seed: int = 0) -> Dict[str, Any]:
    """Decides a VNN-LIB property (which describes a counterexample) on a model.

    Returns the dict ``ironbound verify --out`` writes: ``result`` (``"unsat"``: proved, no
    input of the box satisfies the output constraints; ``"sat"``: a counterexample, checked by a
    forward pass, is in ``counterexample`` as ``{"x": [...], "y": [...]}``; ``"unknown"`` or
    ``"timeout"``), ``seconds`` and ``stage`` (which part of the pipeline decided). ``model`` is
    a ``Model`` or a path; ``timeout`` bounds the whole decision in seconds.
    """
    if not isinstance(model, Model):
        model = load(model)
    return _ironbound.verify(model._net, os.fspath(property), float(timeout), int(seed))


def train(
    config: Union[Mapping[str, Any], PathLike],
    out_dir: PathLike,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
) -> Dict[str, Any]:
    """Trains a network as ``ironbound train --config FILE --out DIR`` does.

    ``config`` is a dict of config keys (docs/train.md; ``None`` values mean the default), a
    path to a TOML file, or a TOML text (a string holding ``=`` or a newline). ``out_dir`` gets
    model.safetensors, model.onnx, config.toml and metrics.jsonl; a run already there resumes.
    ``callback(metrics)`` is called after each epoch with that epoch's metrics.jsonl record; an
    exception in it (or Ctrl-C) stops training after the step in flight, keeping the last
    epoch's checkpoint (call again to resume), and is re-raised.

    Returns ``{"completed": bool, "resumed_from": epoch or None, "out_dir": str,
    "metrics": [per-epoch dicts]}``.
    """
    out = os.fspath(out_dir)
    if isinstance(config, Mapping):
        items = {str(k): v for k, v in config.items() if v is not None}
        return _ironbound.train(out, callback, config_dict=items)
    if isinstance(config, str) and ("=" in config or "\n" in config):
        return _ironbound.train(out, callback, config_toml=config)
    if isinstance(config, (str, os.PathLike)):
        return _ironbound.train(out, callback, config_path=os.fspath(config))
    raise TypeError(f"config: expected a dict, a TOML path or a TOML text, got {type(config).__name__}")


def dataset(name: str, split: str = "test", n: Optional[int] = None, data_dir: Optional[PathLike] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The images (float32 ``[N, C, H, W]`` in [0, 1], as PyTorch's ``ToTensor`` gives) and
    labels (int64 ``[N]``) of ``mnist``, ``fashion-mnist``, ``cifar10`` or ``svhn``, looked up
    where the CLI's ``--dataset`` looks (``data_dir``, ``$IRONBOUND_DATA``, system places such
    as /usr/share/datasets, then a checksummed download); ``n`` keeps the first n samples."""
    return _ironbound.dataset(name, split, n, None if data_dir is None else os.fspath(data_dir))
