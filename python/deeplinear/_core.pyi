"""
deeplinear compiled core (Eigen); use the deeplinear package, not this module.
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['CompletionFactors64', 'CompletionTrainer64', 'Network32', 'Network64', 'OptKind', 'OptimizerConfig', 'Trainer32', 'Trainer64', 'build_info', 'get_num_threads', 'learning_counts', 'loss_and_gradients32', 'loss_and_gradients64', 'matmul32', 'matmul64', 'rho_schedule', 'set_num_threads', 'sparse_product64']
class Network64:
    """
    Weights W_1..W_L (W_1 acts first), owned by the core.
    """
    @staticmethod
    def init(dims: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], init: str, init_scale: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, activation: str = 'none') -> Network64:
        ...
    def __init__(self, weights: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64]], activation: str = 'none') -> None:
        """
        Copies the given weights (arrays of this dtype, any layout and strides) into the core in one pass that also checks them (ValueError 'weights[i]: contains NaN or Inf'); activation 'none' or 'relu' (after every hidden layer).
        """
    def all_finite(self) -> bool:
        ...
    def end_to_end(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        ...
    def forward(self, X: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"]) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        """
        The output W_L H_{L-1} on inputs X (d_0 x n, C-contiguous).
        """
    def hidden(self, X: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"]) -> list[typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]]:
        """
        The hidden outputs [H_1, ..., H_{L-1}] on inputs X (d_0 x n).
        """
    def set_weight(self, index: typing.SupportsInt | typing.SupportsIndex, weight: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"]) -> None:
        ...
    def weight(self, index: typing.SupportsInt | typing.SupportsIndex) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        """
        A copy of layer index+1 (0-based index).
        """
    def weight_view(self, index: typing.SupportsInt | typing.SupportsIndex) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"]:
        """
        A read-only view of layer index+1; valid while the network lives, changes as it trains.
        """
    @property
    def activation(self) -> str:
        ...
    @property
    def depth(self) -> int:
        ...
    @property
    def dims(self) -> list[int]:
        ...
    @property
    def version(self) -> int:
        """
        Changes whenever the weights may have changed (every write access: a training step, set_weight, a restore); equal versions, same weights.
        """
class Network32:
    """
    Weights W_1..W_L (W_1 acts first), owned by the core.
    """
    @staticmethod
    def init(dims: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], init: str, init_scale: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, activation: str = 'none') -> Network32:
        ...
    def __init__(self, weights: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float32]], activation: str = 'none') -> None:
        """
        Copies the given weights (arrays of this dtype, any layout and strides) into the core in one pass that also checks them (ValueError 'weights[i]: contains NaN or Inf'); activation 'none' or 'relu' (after every hidden layer).
        """
    def all_finite(self) -> bool:
        ...
    def end_to_end(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]"]:
        ...
    def forward(self, X: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"]) -> typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]"]:
        """
        The output W_L H_{L-1} on inputs X (d_0 x n, C-contiguous).
        """
    def hidden(self, X: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"]) -> list[typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]"]]:
        """
        The hidden outputs [H_1, ..., H_{L-1}] on inputs X (d_0 x n).
        """
    def set_weight(self, index: typing.SupportsInt | typing.SupportsIndex, weight: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"]) -> None:
        ...
    def weight(self, index: typing.SupportsInt | typing.SupportsIndex) -> typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]"]:
        """
        A copy of layer index+1 (0-based index).
        """
    def weight_view(self, index: typing.SupportsInt | typing.SupportsIndex) -> typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"]:
        """
        A read-only view of layer index+1; valid while the network lives, changes as it trains.
        """
    @property
    def activation(self) -> str:
        ...
    @property
    def depth(self) -> int:
        ...
    @property
    def dims(self) -> list[int]:
        ...
    @property
    def version(self) -> int:
        """
        Changes whenever the weights may have changed (every write access: a training step, set_weight, a restore); equal versions, same weights.
        """
class OptKind:
    """
    Members:
    
      GD
    
      Adam
    
      RMSProp
    """
    Adam: typing.ClassVar[OptKind]
    GD: typing.ClassVar[OptKind]
    RMSProp: typing.ClassVar[OptKind]
    __members__: typing.ClassVar[dict[str, OptKind]]
    @typing.overload
    def __eq__(self, other: OptKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: OptKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class OptimizerConfig:
    centered: bool
    kind: OptKind
    nesterov: bool
    def __init__(self) -> None:
        ...
    def validate(self) -> None:
        ...
    @property
    def b1(self) -> float:
        ...
    @b1.setter
    def b1(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def b2(self) -> float:
        ...
    @b2.setter
    def b2(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def decay(self) -> float:
        ...
    @decay.setter
    def decay(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def eps(self) -> float:
        ...
    @eps.setter
    def eps(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def eps_root(self) -> float:
        ...
    @eps_root.setter
    def eps_root(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def initial_scale(self) -> float:
        ...
    @initial_scale.setter
    def initial_scale(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def lr(self) -> float:
        ...
    @lr.setter
    def lr(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def momentum(self) -> float:
        ...
    @momentum.setter
    def momentum(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def weight_decay(self) -> float:
        ...
    @weight_decay.setter
    def weight_decay(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class Trainer64:
    """
    Training loop over a network (updated in place) and a problem.
    """
    def __init__(self, network: Network64, kind: str, a: typing.Any, b: typing.Any, c: typing.SupportsFloat | typing.SupportsIndex, optimizer: OptimizerConfig, record_every: typing.SupportsInt | typing.SupportsIndex = 1, tol: typing.SupportsFloat | typing.SupportsIndex = -1.0, expected_steps: typing.SupportsInt | typing.SupportsIndex = 0, loss_offset: typing.SupportsFloat | typing.SupportsIndex = 0.0, left: typing.Any = None, right: typing.Any = None) -> None:
        ...
    def bulk_state(self) -> tuple[float, float]:
        """
        (rho, b): the bulk value and heavy ball's trace of it (checkpoints).
        """
    def finish(self) -> str:
        ...
    def history(self) -> dict:
        ...
    def optimizer_state(self) -> tuple:
        ...
    def reset(self, optimizer: OptimizerConfig, record_every: typing.SupportsInt | typing.SupportsIndex = 1, tol: typing.SupportsFloat | typing.SupportsIndex = -1.0, expected_steps: typing.SupportsInt | typing.SupportsIndex = 0, loss_offset: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        """
        A fresh run on the same network and problem (the next training call): optimizer state, step, history, tracker as new; the workspace and the forward pass of unchanged weights kept.
        """
    def restore(self, step: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, trace: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], first: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], second: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], steps: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], train_loss: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], test_loss: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
    def restore_bulk(self, rho: typing.SupportsFloat | typing.SupportsIndex, b: typing.SupportsFloat | typing.SupportsIndex) -> None:
        """
        Writes back a bulk_state() (after set_bulk).
        """
    def restore_tracking(self, state: dict) -> None:
        """
        Writes back a state from tracking_state() (of a tracker set up with the same settings).
        """
    def run(self, steps: typing.SupportsInt | typing.SupportsIndex) -> str:
        ...
    def set_bulk(self, rho: typing.SupportsFloat | typing.SupportsIndex, count: typing.SupportsFloat | typing.SupportsIndex) -> None:
        """
        Carries the bulk value rho (bulk.hpp) of a compressed network (count = d - 2r directions: its loss terms are added to the losses) or of a wide network tracked 'structured' (count = 0: no loss terms); it advances with every update.
        """
    def set_tracking(self, network: Network64, mode: str, every: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex, tol: typing.SupportsFloat | typing.SupportsIndex, max_iter: typing.SupportsInt | typing.SupportsIndex, verify_every: typing.SupportsInt | typing.SupportsIndex, ref_u: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], ref_v: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], top_only: bool = False, bulk_count: typing.SupportsInt | typing.SupportsIndex = 0, bulk_rho: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    def tracking(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
        ...
    def tracking_state(self) -> typing.Any:
        """
        The tracker's complete state (flat arrays, counters, warm starts, generator), or None without tracking.
        """
    @property
    def bulk_rho(self) -> float:
        ...
    @property
    def has_bulk(self) -> bool:
        ...
    @property
    def last_loss(self) -> float:
        ...
    @property
    def status(self) -> str:
        ...
    @property
    def step(self) -> int:
        ...
class Trainer32:
    """
    Training loop over a network (updated in place) and a problem.
    """
    def __init__(self, network: Network32, kind: str, a: typing.Any, b: typing.Any, c: typing.SupportsFloat | typing.SupportsIndex, optimizer: OptimizerConfig, record_every: typing.SupportsInt | typing.SupportsIndex = 1, tol: typing.SupportsFloat | typing.SupportsIndex = -1.0, expected_steps: typing.SupportsInt | typing.SupportsIndex = 0, loss_offset: typing.SupportsFloat | typing.SupportsIndex = 0.0, left: typing.Any = None, right: typing.Any = None) -> None:
        ...
    def bulk_state(self) -> tuple[float, float]:
        """
        (rho, b): the bulk value and heavy ball's trace of it (checkpoints).
        """
    def finish(self) -> str:
        ...
    def history(self) -> dict:
        ...
    def optimizer_state(self) -> tuple:
        ...
    def reset(self, optimizer: OptimizerConfig, record_every: typing.SupportsInt | typing.SupportsIndex = 1, tol: typing.SupportsFloat | typing.SupportsIndex = -1.0, expected_steps: typing.SupportsInt | typing.SupportsIndex = 0, loss_offset: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        """
        A fresh run on the same network and problem (the next training call): optimizer state, step, history, tracker as new; the workspace and the forward pass of unchanged weights kept.
        """
    def restore(self, step: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, trace: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float32, "[m, n]"]], first: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float32, "[m, n]"]], second: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float32, "[m, n]"]], steps: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], train_loss: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], test_loss: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
    def restore_bulk(self, rho: typing.SupportsFloat | typing.SupportsIndex, b: typing.SupportsFloat | typing.SupportsIndex) -> None:
        """
        Writes back a bulk_state() (after set_bulk).
        """
    def restore_tracking(self, state: dict) -> None:
        """
        Writes back a state from tracking_state() (of a tracker set up with the same settings).
        """
    def run(self, steps: typing.SupportsInt | typing.SupportsIndex) -> str:
        ...
    def set_bulk(self, rho: typing.SupportsFloat | typing.SupportsIndex, count: typing.SupportsFloat | typing.SupportsIndex) -> None:
        """
        Carries the bulk value rho (bulk.hpp) of a compressed network (count = d - 2r directions: its loss terms are added to the losses) or of a wide network tracked 'structured' (count = 0: no loss terms); it advances with every update.
        """
    def set_tracking(self, network: Network32, mode: str, every: typing.SupportsInt | typing.SupportsIndex, k: typing.SupportsInt | typing.SupportsIndex, tol: typing.SupportsFloat | typing.SupportsIndex, max_iter: typing.SupportsInt | typing.SupportsIndex, verify_every: typing.SupportsInt | typing.SupportsIndex, ref_u: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], ref_v: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], top_only: bool = False, bulk_count: typing.SupportsInt | typing.SupportsIndex = 0, bulk_rho: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    def tracking(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
        ...
    def tracking_state(self) -> typing.Any:
        """
        The tracker's complete state (flat arrays, counters, warm starts, generator), or None without tracking.
        """
    @property
    def bulk_rho(self) -> float:
        ...
    @property
    def has_bulk(self) -> bool:
        ...
    @property
    def last_loss(self) -> float:
        ...
    @property
    def status(self) -> str:
        ...
    @property
    def step(self) -> int:
        ...
class CompletionFactors64:
    """
    Factors of a compressed completion model U W~_L ... W~_1 V^T (float64, owned).
    """
    def __init__(self, U: typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"], layers: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], V: typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]) -> None:
        ...
    def get(self, index: typing.SupportsInt | typing.SupportsIndex) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
        """
        A copy of factor i in the optimizer's order: 0 = V, 1..L = W~_1..W~_L, L+1 = U.
        """
    def set(self, index: typing.SupportsInt | typing.SupportsIndex, value: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"]) -> None:
        ...
    @property
    def count(self) -> int:
        ...
    @property
    def depth(self) -> int:
        ...
class CompletionTrainer64:
    """
    Training loop of compressed completion (the interface of Trainer64).
    """
    def __init__(self, factors: CompletionFactors64, entries: tuple, test: typing.Any, rows: typing.SupportsInt | typing.SupportsIndex, cols: typing.SupportsInt | typing.SupportsIndex, optimizer: OptimizerConfig, c: typing.SupportsFloat | typing.SupportsIndex, outer_lr_scale: typing.SupportsFloat | typing.SupportsIndex, record_every: typing.SupportsInt | typing.SupportsIndex = 1, tol: typing.SupportsFloat | typing.SupportsIndex = -1.0, expected_steps: typing.SupportsInt | typing.SupportsIndex = 0, threads: typing.SupportsInt | typing.SupportsIndex = 1, column_block: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def finish(self) -> str:
        ...
    def history(self) -> dict:
        ...
    def optimizer_state(self) -> tuple:
        ...
    def restore(self, step: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, trace: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], first: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], second: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, n]"]], steps: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], train_loss: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], test_loss: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
    def run(self, steps: typing.SupportsInt | typing.SupportsIndex) -> str:
        ...
    def test_loss_now(self) -> float:
        """
        The test loss at the current factors (NaN without test entries).
        """
    @property
    def column_block(self) -> int:
        """
        Column block width of the pass over the entries (sparse.hpp).
        """
    @property
    def last_loss(self) -> float:
        ...
    @property
    def status(self) -> str:
        ...
    @property
    def step(self) -> int:
        ...
    @property
    def threads(self) -> int:
        ...
def _blas_bind_file(path: str, source: str, reason: str, mkl: bool = False) -> None:
    """
    Run the core's products on the OpenBLAS (or with mkl, MKL's libmkl_rt) at path (loaded privately); RuntimeError saying why not.
    """
def _blas_bind_loaded(module_path: str, reason: str) -> None:
    """
    Run the core's products on the OpenBLAS that the loaded shared object module_path (NumPy's _multiarray_umath) uses; RuntimeError saying why not.
    """
def _gemm64(c: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.writeable", "flags.c_contiguous"], a: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], trans_a: bool, b: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], trans_b: bool, alpha: typing.SupportsFloat | typing.SupportsIndex, beta: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    Tests only: c = alpha op(a) op(b) + beta c through the core's product (float64, C-contiguous).
    """
def build_info() -> dict:
    ...
def get_num_threads() -> int:
    ...
def learning_counts(values: typing.Annotated[numpy.typing.ArrayLike, numpy.float64, "[m, 1]"], count: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], rank2: typing.SupportsInt | typing.SupportsIndex, tie_tol: typing.SupportsFloat | typing.SupportsIndex = 1e-10) -> list[int]:
    """
    How many copies of each singular value form the learning subspace (the rank2 farthest from the median in s^2), or [] when not identifiable (deeplinear::learning_counts).
    """
def loss_and_gradients32(network: Network32, kind: str, a: typing.Any, b: typing.Any, c: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex) -> tuple[float, float, list[typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]"]]]:
    """
    (train loss, test loss, [grad_1, ..., grad_L]) at the network's current weights.
    """
def loss_and_gradients64(network: Network64, kind: str, a: typing.Any, b: typing.Any, c: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex) -> tuple[float, float, list[typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]]]:
    """
    (train loss, test loss, [grad_1, ..., grad_L]) at the network's current weights.
    """
def matmul32(a: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"], b: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"], out: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.writeable", "flags.c_contiguous"]) -> None:
    """
    out = a @ b with the core's GEMM (float32, C-contiguous).
    """
def matmul64(a: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], b: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], out: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.writeable", "flags.c_contiguous"]) -> None:
    """
    out = a @ b with the core's GEMM (float64, C-contiguous).
    """
def rho_schedule(init_scale: typing.SupportsFloat | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, depth: typing.SupportsInt | typing.SupportsIndex, steps: typing.SupportsInt | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, c: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool) -> numpy.typing.NDArray[numpy.float64]:
    """
    rho(t), t = 0..steps: the bulk value's recursion (deeplinear::BulkValue, as in training).
    """
def set_num_threads(threads: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Number of threads of the matrix products (BLAS and Eigen).
    """
def sparse_product64(entries: tuple, rows: typing.SupportsInt | typing.SupportsIndex, cols: typing.SupportsInt | typing.SupportsIndex, x: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], transpose: bool, threads: typing.SupportsInt | typing.SupportsIndex = 1) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]"]:
    """
    S x (or S^T x) for the sparse matrix S of the entries (row_ptr, col, val), threads over rows.
    """
__version__: str
