"""hwsim must import and run where PyTorch is not installed, and on numpy alone."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import numpy as np
    import lqir
    import hwsim
    from lqir.random_models import random_dense_model
    model = random_dense_model(np.random.default_rng(0), [10, 6, 3], 2, 2)
    model = lqir.load(lqir.save(model, sys.argv[1]))
    x = np.random.default_rng(1).integers(0, model.input.levels, size=(4, 10))
    a = hwsim.simulate(model, x)
    b = hwsim.simulate(model, x, mode="bitplane")
    assert (a == b).all()
    assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
    print("OK", a.shape)
""")


def test_lqir_and_hwsim_import_without_torch(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.lqir.npz")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK (4, 3)"


def test_blocking_torch_really_blocks():
    """The guard above is meaningful: importing torch under it fails."""
    out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; import torch"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "import of torch halted" in out.stderr


NO_NUMBA = textwrap.dedent("""
    import sys
    sys.modules["numba"] = None  # as if numba were not installed
    import numpy as np
    import hwsim
    from lqir.random_models import random_dense_model
    model = random_dense_model(np.random.default_rng(0), [10, 6, 3], 2, 2)
    x = np.random.default_rng(1).integers(0, model.input.levels, size=(40, 10))
    sim = hwsim.Simulator(model, chunk=8)
    assert sim.kernels.name == "numpy"
    assert (sim.run(x) == sim.run(x, mode="bitplane")).all()
    try:
        hwsim.Simulator(model, kernels="numba")
    except ImportError as exc:
        print("refused:", exc)
""")


def test_hwsim_runs_on_numpy_alone_without_numba():
    out = subprocess.run([sys.executable, "-c", NO_NUMBA], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("refused: kernels='numba' needs numba, which does not import "
                                  "(ModuleNotFoundError: import of numba halted; None in sys.modules): "
                                  "pip install numba, or use kernels='numpy'")
