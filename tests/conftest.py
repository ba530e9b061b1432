"""Shared fixtures: hypothesis is derandomized so that every failure reproduces.

``LQFLOW_HYPOTHESIS_PROFILE=lqflow-noshrink`` (set by ``benchmarks/mutation_check.py``,
where failures are the point) reports the first failing example without shrinking it.
"""

import os

import numpy as np
import pytest
from hypothesis import Phase, settings

settings.register_profile("lqflow", derandomize=True, deadline=None, max_examples=40, print_blob=True)
settings.register_profile("lqflow-noshrink", settings.get_profile("lqflow"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("LQFLOW_HYPOTHESIS_PROFILE", "lqflow"))


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread for the test (tiny networks on a shared machine run
    several times faster), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def digits():
    from models.data import load_dataset

    return load_dataset("digits", seed=0)


def _train(arch, quantizer, wbits, abits, epochs=20):
    from lqflow.flow import RunConfig, train_models
    from models.data import load_dataset

    cfg = RunConfig(arch=arch, quantizer=quantizer, weight_bits=wbits, act_bits=abits,
                    float_epochs=epochs, qat_epochs=epochs, widths=(64, 64) if arch == "mlp" else (16, 32))
    data = load_dataset("digits", seed=0)
    float_net, qat_net, _ = train_models(cfg, data, progress=False)
    return float_net, qat_net


@pytest.fixture(scope="session")
def trained_mlp():
    return _train("mlp", "lq", 2, 2)


@pytest.fixture(scope="session")
def trained_cnn():
    return _train("cnn", "lq", 2, 2, epochs=12)
