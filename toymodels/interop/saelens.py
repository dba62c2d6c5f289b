"""An SAELens sparse autoencoder as the feature dictionary a head is scored against.

Shapes:
  d_sae latents (N features here), d_in = d_model (D)
  W_dec [d_sae, d_model]: latent i writes the direction W_dec[i] into the residual
  features W [D, N] = the rows of W_dec, each divided by its norm

An SAE directory, as SAELens' save_model writes it, holds cfg.json (d_in, d_sae,
architecture, metadata such as hook_name; older versions put model_name and hook_name at
the top level) and sae_weights.safetensors (W_enc [d_in, d_sae], W_dec, b_enc, b_dec, and
per architecture threshold etc.). SAELens normalises the decoder by folding its row norms
into the encoder (SAE.fold_W_dec_norm: W_dec / ‖W_dec[i]‖, W_enc and b_enc times the
norms), which leaves what the SAE computes unchanged and makes every decoder row a unit
vector: those unit rows are the features. An all-zero row (a dead latent, which SAELens'
division would turn into NaN) stays zero; the analysis marks it dead.
"""

from pathlib import Path

import numpy as np

from toymodels.errors import AnalysisInputError

SAE_WEIGHTS = "sae_weights.safetensors"
SAE_CONFIG = "cfg.json"


def read_sae(path) -> tuple[np.ndarray, dict]:
    """(features W [d_in, d_sae], info) from an SAE directory or its .safetensors file (then
    cfg.json beside it is read if present). info: d_sae, d_in, hook_name, architecture,
    dead (how many all-zero rows). AnalysisInputError for anything that does not fit."""
    from toymodels.interop.transformer_lens import read_tensors

    path = Path(path)
    if path.is_dir():
        weights, config_file = path / SAE_WEIGHTS, path / SAE_CONFIG
        missing = [f.name for f in (config_file, weights) if not f.is_file()]
        if missing:
            raise AnalysisInputError(f"{path} is not an SAELens SAE directory: it lacks "
                                     f"{' and '.join(missing)}")
    else:
        weights, config_file = path, path.with_name(SAE_CONFIG)
    tensors = read_tensors(weights, "SAE weights")
    if "W_dec" not in tensors:
        raise AnalysisInputError(f"{weights} holds no W_dec; an SAELens SAE stores its "
                                 f"decoder as W_dec [d_sae, d_model] (it holds "
                                 f"{', '.join(sorted(tensors)) or 'nothing'})")
    W_dec = tensors["W_dec"]
    if W_dec.ndim != 2 or W_dec.dtype.kind not in "biuf":
        raise AnalysisInputError(f"{weights}: W_dec has shape {W_dec.shape} ({W_dec.dtype}); "
                                 "expected numbers [d_sae, d_model]")
    config = _read_config(config_file) if config_file.is_file() else {}
    d_sae, d_in = W_dec.shape
    for name, actual in (("d_sae", d_sae), ("d_in", d_in)):
        if name in config and config[name] != actual:
            raise AnalysisInputError(f"{config_file} says {name}={config[name]!r} but W_dec "
                                     f"is [{d_sae}, {d_in}] ([d_sae, d_in])")
    W_dec = W_dec.astype(np.float64)
    if not np.isfinite(W_dec).all():
        raise AnalysisInputError(f"{weights}: W_dec holds NaN or infinite values")
    norms = np.linalg.norm(W_dec, axis=1)
    unit = np.divide(W_dec, norms[:, None], out=np.zeros_like(W_dec), where=norms[:, None] > 0)
    metadata = config.get("metadata") if isinstance(config.get("metadata"), dict) else {}
    info = {"kind": "saelens", "d_sae": d_sae, "d_in": d_in, "dead": int(np.sum(norms == 0)),
            "architecture": config.get("architecture"),
            "hook_name": metadata.get("hook_name", config.get("hook_name",
                                                              config.get("hook_point")))}
    return unit.T.astype(np.float32), info


def _read_config(path: Path) -> dict:
    from toymodels.store import read_json
    return read_json(path, "SAELens config", AnalysisInputError)


def read_features(path) -> tuple[np.ndarray, dict]:
    """A feature dictionary for `--features`: a [D, N] (or [..., D, N]) .npy array, or an
    SAELens SAE (directory, or its .safetensors file). Returns (W, info)."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        if not path.exists():
            raise AnalysisInputError(f"--features {path} does not exist")
        return read_sae(path)
    if not path.is_file():
        raise AnalysisInputError(f"--features {path} does not exist")
    if path.suffix == ".npz":  # an .npz holds several arrays
        raise AnalysisInputError(f"--features {path} must be one array saved as .npy, an "
                                 "SAELens SAE directory or its .safetensors file")
    from toymodels.arrays import read_npy
    return read_npy(path, AnalysisInputError), {"kind": "npy"}
