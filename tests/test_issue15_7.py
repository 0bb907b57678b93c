"""Issue 15, finding 7: after a KeyboardInterrupt the history and the network agree: the last
recorded step is the number of steps done, its loss the returned network's loss."""

import numpy as np
import pytest

import deeplinear as dl


@pytest.mark.parametrize("record_every", [1, 3])
def test_interrupt_history_ends_at_the_network(record_every, tmp_path):
    prob = dl.problems.factorization(8, 2, seed=0)
    net = dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0)

    def stop(step, n):
        if step == 5:
            raise KeyboardInterrupt

    res = dl.train(net, prob, dl.GD(lr=0.5), 20, record_every=record_every, callback=stop,
                   callback_every=5, progress=False, checkpoint=tmp_path / "c.npz")
    assert res.status == "interrupted"
    assert res.n_steps == 5 and res.steps[-1] == 5
    # the last recorded loss is the returned network's (NumPy oracle)
    np.testing.assert_allclose(res.train_loss[-1], prob.loss(net.end_to_end()), rtol=1e-10)
    # resuming from the checkpoint written at the interrupt continues the same run
    ref = dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0)
    full = dl.train(ref, prob, dl.GD(lr=0.5), 20, record_every=record_every, progress=False)
    again = dl.train(dl.DeepLinearNetwork(3, 8, init_scale=0.5, seed=0), prob, dl.GD(lr=0.5), 20,
                     record_every=record_every, progress=False, checkpoint=tmp_path / "c.npz")
    assert again.n_steps == 20
    np.testing.assert_allclose(again.train_loss[-1], full.train_loss[-1], rtol=1e-12)
