"""toymodels: toy attention models with planted features, and the SVD analysis that
measures how well singular vectors recover them.

Pipeline: configs -> families (model, task, loss, analysis) -> training -> rundir (Run)
-> plots; the verbs run, sweep, sad and theory, and the CLI, sit on top.

In a notebook:

    import toymodels
    run = toymodels.train("single-pair", seeds=range(4), vary={"lam": [1.0, 10.0]})
    run.tables()["pairs"]          # pandas, one row per planted pair, seed and lam joined
    toymodels.plot_alignment(run)  # a matplotlib Figure
    run.save("runs/single-pair")   # toymodels.load_run("runs/single-pair") reads it back

Importing toymodels loads no JAX and leaves matplotlib's backend alone; JAX loads on the
first call that trains or analyses.
"""

from toymodels.configs import (PRESETS, Instance, ToyConfig, TransformerConfig, make_instances,
                               preset)
from toymodels.errors import (AnalysisInputError, ConfigError, LayoutError, PretrainedError,
                              RunDirError)
from toymodels.rundir import LoadedRun, Run, load_run


def train(config, seeds=(0,), vary: dict | None = None, *, progress: bool = True) -> Run:
    """Train instances of config (a config object, or a preset name) in memory, one per seed
    and combination of vary's values (vary maps a batched field, e.g. "lam", to a list), and
    analyse them. Returns a Run; nothing is written until run.save(dir)."""
    from toymodels.run import train_run
    return train_run(config, seeds, vary, progress=progress)


def analyze(*args, **kwargs):
    """Alignment metrics of every head: see toymodels.analysis.alignment.analyze. The result
    has .heads, .pairs, .features (lists of rows) and .to_pandas(table)."""
    from toymodels.analysis.alignment import analyze as _analyze
    return _analyze(*args, **kwargs)


def plot_alignment(run, path=None, instance: int = 0):
    """A toy run's |cos| of features against singular vectors and every instance's
    spectrum, as a matplotlib Figure (saved to path when given). run: a Run or a run
    directory."""
    from toymodels.plots import plot_alignment as _plot
    return _plot(run, path, instance)


def plot_run(run, path=None):
    """The figure a run of any family draws (its alignment.png), as a matplotlib Figure."""
    from toymodels.families import family_of
    run = run if isinstance(run, Run) else load_run(run)
    return family_of(run.config).figure(run, path)


__all__ = ["PRESETS", "AnalysisInputError", "ConfigError", "Instance", "LayoutError",
           "LoadedRun", "PretrainedError", "Run", "RunDirError", "ToyConfig",
           "TransformerConfig", "analyze", "load_run", "make_instances", "plot_alignment",
           "plot_run", "preset", "train"]
__version__ = "0.1.0"
