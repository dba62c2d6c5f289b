"""The Python API as a notebook uses it: train in memory, tables as DataFrames, figures
returned (never a changed backend), save and reload to equal tables."""

import subprocess
import sys

import pandas as pd
import pytest
from matplotlib.figure import Figure

import toymodels


def test_train_tables_plot_save_reload(tmp_path):
    # the README's notebook snippet, at tiny size
    run = toymodels.train(toymodels.preset("single-pair").replace(steps=250), seeds=[0, 1],
                          vary={"lam": [1.0, 10.0]}, progress=False)
    tables = run.tables()
    pairs = tables["pairs"]
    assert isinstance(pairs, pd.DataFrame) and len(pairs) == 4  # 2 seeds × 2 λ, one pair each
    assert set(pairs["seed"]) == {0, 1} and set(pairs["lam"]) == {1.0, 10.0}
    assert len(tables["curves"]) == 4 * 250 and {"recon", "attn"} <= set(tables["curves"])
    fig = toymodels.plot_alignment(run)
    assert isinstance(fig, Figure) and not (tmp_path / "never.png").exists()

    run.save(tmp_path / "run")
    loaded = toymodels.load_run(tmp_path / "run")
    assert isinstance(loaded, toymodels.Run) and loaded.summary == run.summary
    for name in ("heads", "pairs", "features", "curves"):
        pd.testing.assert_frame_equal(tables[name], loaded.tables()[name])
    assert [i.lam for i in loaded.instances] == [i.lam for i in run.instances]
    # a second save to the same place is refused; overwrite replaces it
    with pytest.raises(toymodels.RunDirError):
        run.save(tmp_path / "run")
    run.save(tmp_path / "run", overwrite=True)


def test_transformer_run_in_memory(tmp_path):
    cfg = toymodels.preset("transformer-retrieval").replace(steps=60, batch_size=32,
                                                            chunk_steps=30)
    run = toymodels.train(cfg, seeds=[0], progress=False)
    heads = run.tables()["heads"]
    assert set(heads["circuit"]) == {"qk", "ov"} and (heads["seed"] == 0).all()
    assert isinstance(toymodels.plot_run(run), Figure)
    run.save(tmp_path / "t")
    pd.testing.assert_frame_equal(heads, toymodels.load_run(tmp_path / "t").table("heads"))


def test_analyze_result_to_pandas():
    import numpy as np
    W = np.eye(4, 6, dtype=np.float32)
    W_Q = np.zeros((2, 4), np.float32)
    W_Q[0, 0] = 1.0
    W_K = np.zeros((2, 4), np.float32)
    W_K[0, 1] = 1.0
    res = toymodels.analyze(W, W_Q=W_Q, W_K=W_K, template=((0, 1, 1.0),))
    pairs = res.to_pandas("pairs")
    assert pairs.loc[0, "cos_query_u"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown table"):
        res.to_pandas("nope")


def test_importing_toymodels_leaves_the_backend_and_loads_no_jax():
    """Every module imported, in a fresh process whose user chose a backend."""
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import pkgutil, sys, importlib, toymodels\n"
        "assert not any(m.startswith('jax') for m in sys.modules), 'import toymodels loads JAX'\n"
        "for m in pkgutil.walk_packages(toymodels.__path__, 'toymodels.'):\n"
        "    if m.name != 'toymodels.__main__':\n"
        "        importlib.import_module(m.name)\n"
        "print(matplotlib.get_backend())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "svg"


def test_public_names_are_listed_and_documented():
    for name in toymodels.__all__:
        obj = getattr(toymodels, name)
        assert obj.__doc__, f"toymodels.{name} has no docstring"
