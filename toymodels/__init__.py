"""toymodels: toy attention models with planted features, and the SVD analysis that
measures how well singular vectors recover them.

Pipeline: config -> data -> model -> train -> analysis -> store (-> plots, cli).
"""

from toymodels.config import (PRESETS, ConfigError, Instance, ToyConfig, make_instances,
                              preset)
from toymodels.store import LoadedRun, RunDirError, load_run

__all__ = ["PRESETS", "ConfigError", "Instance", "LoadedRun", "RunDirError", "ToyConfig",
           "load_run", "make_instances", "preset"]
__version__ = "0.1.0"
