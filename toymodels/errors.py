"""Typed errors for bad input. Each message says what is wrong and how to fix it;
the CLI prints it as one line and exits with code 2."""


class ConfigError(ValueError):
    """A configuration value is invalid."""


class RunDirError(ValueError):
    """A directory cannot take a run or an analysis, or does not hold one."""


class AnalysisInputError(ValueError):
    """Weights or features to analyse are missing or have shapes that do not fit."""


class PretrainedError(ValueError):
    """A pretrained model (Hugging Face safetensors) is missing, malformed, or of an
    architecture we cannot load. ("Checkpoint" means training state everywhere else.)"""


class LayoutError(AnalysisInputError):
    """Weights whose layout is not named and cannot be read from their shapes alone (e.g.
    D = H fits both toymodels' [H, D] and TransformerLens' [d_model, d_head])."""
