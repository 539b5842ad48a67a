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
    ) -> Dict[str, npt.NDArray[np.float32]]: ...
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
) -> Dict[str, Any]: ...

def verify(model: Union[Model, PathLike], property: PathLike, timeout: float = 300.0, seed: int = 0) -> Dict[str, Any]: ...
def train(
    config: Union[Mapping[str, Any], PathLike],
    out_dir: PathLike,
    callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
) -> Dict[str, Any]: ...
def dataset(name: str, split: str = "test", n: Optional[int] = None, data_dir: Optional[PathLike] = None) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
