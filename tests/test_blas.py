"""The BLAS library the core runs on (deeplinear._loader, cpp/include/deeplinear/blas_dispatch.hpp).

Where NumPy runs on an OpenBLAS the core can bind (NumPy's wheels), the core shares it: one
library and one thread pool in the process, whose thread count dl.set_num_threads and
threadpoolctl both set.  Otherwise, or when forced, the core uses the bundled scipy-openblas32.
The libraries NumPy has loaded are found here independently of the core, with threadpoolctl.
Products on both libraries are tested against NumPy in test_gemm.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import deeplinear as dl
from deeplinear import _core, _loader

threadpoolctl = pytest.importorskip("threadpoolctl")

pytestmark = pytest.mark.skipif(dl.build_info()["blas"] == "eigen", reason="built without BLAS")


def _numpy_openblas_files() -> list[str]:
    """Real paths of the OpenBLAS libraries loaded from NumPy's own directories (numpy.libs in
    NumPy's wheels), as threadpoolctl sees them."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(np.__file__)))
    dirs = (os.path.join(root, "numpy.libs"), os.path.dirname(os.path.realpath(np.__file__)))
    return [os.path.realpath(lib["filepath"]) for lib in threadpoolctl.threadpool_info()
            if lib.get("internal_api") == "openblas"
            and os.path.realpath(lib["filepath"]).startswith(dirs)]


@pytest.fixture
def shared():
    """The core bound to NumPy's OpenBLAS (skips where NumPy has none the core can bind)."""
    if _loader.bind_blas("numpy") != "numpy":
        pytest.skip(f"NumPy's BLAS cannot be shared here: {dl.build_info()['blas_reason']}")
    yield
    _loader.bind_blas("numpy")


def test_default_is_numpys_openblas_when_numpy_has_one():
    files = _numpy_openblas_files()
    if not files:
        pytest.skip("NumPy does not run on an OpenBLAS from its own wheel directories here")
    info = dl.build_info()
    if os.environ.get("DEEPLINEAR_BUNDLED_BLAS", "") not in ("", "0"):
        assert info["blas_source"] == "bundled"
        return
    assert info["blas_source"] == "numpy", info["blas_reason"]
    assert os.path.realpath(info["blas_library"]) in files
    # NumPy's wheels: ILP64 with the scipy_ prefix and 64_ suffix
    assert info["blas_int_bits"] == (64 if "USE64BITINT" in info["blas_config"] else 32)


def test_shared_library_is_the_only_openblas_the_core_adds(shared):
    """Binding NumPy's library loads nothing: threadpoolctl sees the same OpenBLAS libraries
    before and after (in a fresh process, so that no other test has loaded the fallback)."""
    code = (
        "import numpy, threadpoolctl, json\n"
        "before = sorted(l['filepath'] for l in threadpoolctl.threadpool_info() if l['user_api'] == 'blas')\n"
        "import deeplinear as dl\n"
        "after = sorted(l['filepath'] for l in threadpoolctl.threadpool_info() if l['user_api'] == 'blas')\n"
        "print(json.dumps([before, after, dl.build_info()['blas_source']]))\n")
    env = {k: v for k, v in os.environ.items() if k != "DEEPLINEAR_BUNDLED_BLAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    before, after, source = json.loads(out.stdout.strip().splitlines()[-1])
    assert source == "numpy"
    assert after == before


def test_one_thread_count_for_numpy_and_the_core(shared):
    """dl.set_num_threads sets NumPy's pool (it is the core's); threadpoolctl sets the core's."""
    path = os.path.realpath(dl.build_info()["blas_library"])

    def numpy_threads():
        (lib,) = [lib for lib in threadpoolctl.threadpool_info()
                  if os.path.realpath(lib["filepath"]) == path]
        return lib["num_threads"]

    before = dl.get_num_threads()
    try:
        dl.set_num_threads(1)
        assert numpy_threads() == 1
        dl.set_num_threads(2)
        assert numpy_threads() == 2
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            assert dl.get_num_threads() == 1
        assert dl.get_num_threads() == 2
    finally:
        dl.set_num_threads(before)


def test_forced_fallback_and_back():
    """bind_blas('bundled') runs the core on scipy-openblas32 (32-bit integers), the thread
    count carried over; bind_blas('numpy') returns to the default choice."""
    before = dl.get_num_threads()
    default = dl.build_info()["blas_source"]
    try:
        dl.set_num_threads(1)
        assert _loader.bind_blas("bundled") == "bundled"
        info = dl.build_info()
        assert info["blas_source"] == "bundled" and "forced" in info["blas_reason"]
        assert info["blas_int_bits"] == 32 and "scipy_openblas" in os.path.basename(info["blas_library"])
        assert dl.get_num_threads() == 1
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((90, 80)), rng.standard_normal((80, 70))
        out = np.empty((90, 70))
        _core.matmul64(a, b, out)
        np.testing.assert_allclose(out, a @ b, rtol=0, atol=1e-12 * 80)
    finally:
        _loader.bind_blas("bundled" if default == "bundled" else "numpy")
        dl.set_num_threads(before)
    assert dl.build_info()["blas_source"] == default


def test_bind_blas_refuses_unknown_choice():
    with pytest.raises(ValueError, match="prefer"):
        _loader.bind_blas("atlas")


def test_environment_choice_is_checked():
    code = "import deeplinear"
    env = dict(os.environ, DEEPLINEAR_BLAS_LIBRARY="atlas")
    env.pop("DEEPLINEAR_BUNDLED_BLAS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "DEEPLINEAR_BLAS_LIBRARY" in out.stderr


@pytest.fixture
def mkl():
    """The core bound to MKL (skips where the mkl package is not installed)."""
    default = dl.build_info()["blas_source"]
    if _loader.bind_blas("mkl") != "mkl":
        reason = dl.build_info()["blas_reason"]
        _loader.bind_blas(default)
        pytest.skip(f"MKL cannot be bound here: {reason}")
    yield
    _loader.bind_blas(default)


def test_mkl_binding_products_threads_and_report(mkl):
    """On MKL: the products (float64 and float32, every layout through _gemm64) agree with
    NumPy, dl.set_num_threads sets MKL's thread count (threadpoolctl sees the same), and
    build_info names MKL."""
    info = dl.build_info()
    assert info["blas"] == "mkl" and info["blas_source"] == "mkl"
    assert "libmkl_rt" in os.path.basename(info["blas_library"]) and "Math Kernel" in info["blas_config"]
    assert info["blas_int_bits"] == 32
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((70, 90)), rng.standard_normal((90, 50))
    out = np.empty((70, 50))
    _core.matmul64(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=0, atol=1e-12 * 90)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    out32 = np.empty((70, 50), np.float32)
    _core.matmul32(a32, b32, out32)
    np.testing.assert_allclose(out32, a32.astype(np.float64) @ b32, rtol=0, atol=1e-5 * 90)
    for ta, tb in ((False, True), (True, False), (True, True)):
        x = rng.standard_normal((90, 70) if ta else (70, 90))
        y = rng.standard_normal((50, 90) if tb else (90, 50))
        c = np.full((70, 50), np.nan)
        _core._gemm64(c, x, ta, y, tb, 2.0, 0.0)
        np.testing.assert_allclose(c, 2.0 * (x.T if ta else x) @ (y.T if tb else y), rtol=0, atol=1e-11 * 90)
    before = dl.get_num_threads()
    try:
        dl.set_num_threads(1)
        assert dl.get_num_threads() == 1
        mkl_pools = [p for p in threadpoolctl.threadpool_info() if p.get("internal_api") == "mkl"]
        assert mkl_pools and all(p["num_threads"] == 1 for p in mkl_pools)
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            assert dl.get_num_threads() == 2
    finally:
        dl.set_num_threads(before)


def test_mkl_training_matches_numpy_oracle(mkl):
    """A few GD steps on MKL give the NumPy oracle's losses and weights."""
    import oracle

    target = np.random.default_rng(1).standard_normal((40, 30))
    prob = dl.Factorization(target)
    net = dl.DeepLinearNetwork(3, dims=(30, 50, 60, 40), seed=0)
    want = oracle.train_like(oracle.as64(net.weights), prob, dl.GD(lr=0.05), 5)
    res = dl.train(net, prob, dl.GD(lr=0.05), 5, progress=False)
    np.testing.assert_allclose(res.train_loss, want.train_loss, rtol=1e-12)
    for w, v in zip(net.weights, want.weights):
        np.testing.assert_allclose(w, v, rtol=1e-10, atol=1e-13)


def test_environment_choice_binds_mkl():
    code = "import deeplinear as dl, json; print(json.dumps(dl.build_info()))"
    env = dict(os.environ, DEEPLINEAR_BLAS_LIBRARY="mkl")
    env.pop("DEEPLINEAR_BUNDLED_BLAS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if _loader._mkl_path() is None:
        assert info["blas_source"] != "mkl" and "MKL is not installed" in info["blas_reason"]
    else:
        assert info["blas_source"] == "mkl" and info["blas"] == "mkl"


def test_environment_switch_forces_the_fallback():
    code = "import deeplinear as dl, json; print(json.dumps(dl.build_info()))"
    env = dict(os.environ, DEEPLINEAR_BUNDLED_BLAS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["blas_source"] == "bundled" and "forced" in info["blas_reason"]


def test_unbindable_library_is_refused_with_the_reason(tmp_path):
    """A library without OpenBLAS's symbols (here libm), or a module not loaded, is refused with
    a message naming the cause, and the library in use stays."""
    before = dl.build_info()["blas_library"]
    with pytest.raises(RuntimeError, match="not loaded"):
        _core._blas_bind_loaded(str(tmp_path / "nothing.so"), "test")
    import ctypes.util
    libm = ctypes.util.find_library("m")
    if libm:
        with pytest.raises(RuntimeError, match="no OpenBLAS symbols"):
            _core._blas_bind_file(libm, "test", "test")
    assert dl.build_info()["blas_library"] == before


def test_training_is_the_same_on_both_libraries():
    """A few GD steps of a small network give the same losses on either library (same
    algorithm, products differ only in rounding)."""
    default = dl.build_info()["blas_source"]
    target = np.random.default_rng(1).standard_normal((40, 30))
    losses = {}
    try:
        for which in ("bundled", "numpy"):
            _loader.bind_blas(which)
            net = dl.DeepLinearNetwork(3, dims=(30, 50, 60, 40), seed=0)
            res = dl.train(net, dl.Factorization(target), dl.GD(lr=0.05), 5, progress=False)
            losses[which] = np.asarray(res.train_loss)
    finally:
        _loader.bind_blas("bundled" if default == "bundled" else "numpy")
    np.testing.assert_allclose(losses["numpy"], losses["bundled"], rtol=1e-12)
