"""toymodels: toy attention models with planted features, and the SVD analysis that
measures how well singular vectors recover them.

Pipeline: config -> data -> model -> train -> analysis -> store (-> plots, cli).
"""

from toymodels.config import PRESETS, Instance, ToyConfig, make_instances, preset
from toymodels.errors import AnalysisInputError, ConfigError, LayoutError, RunDirError
from toymodels.store import LoadedRun, load_run


def analyze(*args, **kwargs):
    """Alignment metrics of every head: see toymodels.analysis.alignment.analyze. (Imported on
    first use, so `import toymodels` and the CLI's input checks do not load JAX.)"""
    from toymodels.analysis.alignment import analyze as _analyze
    return _analyze(*args, **kwargs)

__all__ = ["PRESETS", "AnalysisInputError", "ConfigError", "Instance", "LayoutError",
           "LoadedRun", "RunDirError", "ToyConfig", "analyze", "load_run", "make_instances",
           "preset"]
__version__ = "0.1.0"
