"""deeplinear: deep linear networks at BLAS speed.

Train wide deep linear networks (factorization, completion, regression) with GD, momentum,
Adam and RMSProp from a C++/Eigen core, and study the law of parsimony of gradient descent
(Yaras et al., arXiv 2306.01154).

>>> import deeplinear as dl
>>> net = dl.DeepLinearNetwork(depth=3, width=100, init="orthogonal", init_scale=1e-3, seed=0)
>>> prob = dl.problems.factorization(100, rank=5, seed=0)
>>> res = dl.train(net, prob, dl.GD(lr=0.1), steps=100, progress=False)
"""

from ._loader import _core
from . import problems
from ._config import build_info, get_num_threads, set_num_threads
from .network import DeepLinearNetwork
from .optim import GD, Adam, Optimizer, RMSProp
from .problems import Completion, Factorization, Problem, Regression
from .result import Result
from .training import DivergenceError, DivergenceWarning, loss_and_gradients, train
from .parsimony import InvariantBasis, invariant_basis, rho_schedule, structure_residual
from .compression import (ApproximationWarning, CompressedNetwork, ReducedFactorization, compress,
                          reduced_network)
from . import experiments
from .experiments import sweep

__version__ = _core.__version__

__all__ = [
    "Adam", "Completion", "DeepLinearNetwork", "DivergenceError", "DivergenceWarning",
    "Factorization", "GD", "Optimizer", "Problem", "RMSProp", "Regression", "Result",
    "build_info", "get_num_threads", "loss_and_gradients", "problems", "set_num_threads",
    "train", "__version__", "InvariantBasis", "invariant_basis", "rho_schedule",
    "structure_residual", "ApproximationWarning", "CompressedNetwork", "ReducedFactorization",
    "compress", "reduced_network", "experiments", "sweep",
]
