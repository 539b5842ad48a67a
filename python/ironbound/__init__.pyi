"""Type hints of the ironbound package (see __init__.py and docs/python.md)."""

import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, os.PathLike[str]]
ArrayLike = Any  # numpy array, or anything with __dlpack__ / __array__ (e.g. a CPU torch tensor)

class Model:
    @property
    def input_shape(self) -> Tuple[int, int, int]: ...
    @property
    def num_outputs(self) -> int: ...
    @property
    def path(self) -> str: ...
    def bounds(
        self,
        x: ArrayLike,
        eps: float,
        method: str = "crown",
        labels: Optional[ArrayLike] = None,
        clip: Optional[Sequence[float]] = None,
        timeout: Optional[float] = None,
        batch_size: int = 256,
        seed: int = 0,
        sound: bool = False,
        regularizers: bool = False,
    ) -> Dict[str, npt.NDArray[np.float32]]:
        """Output (and, with labels, margin) bounds over the l-inf ball, as `ironbound bounds`;
        `seed` is `--seed` of the random slopes (one-step, random-slope), `sound` is `--sound`,
        `regularizers` is `--regularizers` (adds `reg_d`, `reg_r`)."""
    def forward(self, x: ArrayLike, batch_size: int = 256) -> npt.NDArray[np.float32]: ...

def load(path: PathLike, normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> Model: ...
def certify(
    model: Model,
    x: ArrayLike,
    y: ArrayLike,
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
    """The report of `ironbound certify` for the samples (x, y); float-sound unless `fast`
    (`--fast`). `shard=(I, N)` is `--shard I/N`:
    only the I-th of N contiguous, nearly equal slices of the samples is evaluated and the report
    gets a `shard` object for `merge`. `seed` is `--seed` of the random slopes."""

def merge(reports: Sequence[Union[Mapping[str, Any], PathLike]], out: Optional[PathLike] = None) -> Any:
    """`ironbound merge`: the N shard reports (dicts or report.json paths, any order) into the
    unsharded report dict (verify results.csv shards: the merged text); `out` also writes it."""

def verify(model: Union[Model, PathLike], property: PathLike, timeout: float = 300.0, seed: int = 0) -> Dict[str, Any]: ...
def train(
    config: Union[Mapping[str, Any], PathLike],
    out_dir: PathLike,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
) -> Dict[str, Any]: ...
def dataset(name: str, split: str = "test", n: Optional[int] = None, data_dir: Optional[PathLike] = None) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
