"""What every checkpoint loader shares: safetensors and config reading, tokenizers, and the
dataclasses a forward pass hands to the sparse attention decomposition.

Shapes:
  L layers, n heads per layer, H head dim, D residual dim, F MLP width
  P prompts, T tokens (prompts right-padded to the longest)
  W_Q, W_K, W_V [L, n, H, D];  W_O [L, n, D, H];  b_Q, b_K, b_V [L, n, H]
  x [L, P, T, D]: the attention input of every layer; mask [P, T, T]; probs [L, P, n, T, T]

No PyTorch: tensors are read with `safetensors` into NumPy, the tokenizer with `tokenizers`.
"""

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from toymodels.errors import AnalysisInputError, PretrainedError


@dataclass(frozen=True)
class HeadWeights:
    """Per-head attention weights in the analysis order (notation of docs/science.md)."""
    W_Q: np.ndarray  # [L, n, H, D]
    W_K: np.ndarray  # [L, n, H, D]
    W_V: np.ndarray  # [L, n, H, D]
    W_O: np.ndarray  # [L, n, D, H]
    b_Q: np.ndarray  # [L, n, H]
    b_K: np.ndarray  # [L, n, H]
    b_V: np.ndarray  # [L, n, H]


HEAD_FIELDS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")


def stack_layers(per_layer: dict) -> tuple[HeadWeights, dict]:
    """Stack each per-layer list of arrays on a leading layer axis: the head weights as
    HeadWeights, everything else (LayerNorms, MLP) as a dict of parameters."""
    stacked = {k: np.stack(v) for k, v in per_layer.items()}
    return HeadWeights(**{k: stacked.pop(k) for k in HEAD_FIELDS}), stacked


@dataclass
class Encoded:
    """Tokenized prompts, right-padded to the longest."""
    ids: np.ndarray  # [P, T] int32, padded with pad_id
    valid: np.ndarray  # [P, T] bool: a real token (not padding)
    special: np.ndarray  # [P, T] bool: a special token ([CLS], [SEP], BOS)
    tokens: list[list[str]]  # per prompt, its tokens as strings (no padding)


@dataclass
class AttentionInputs:
    """What a forward pass exposes to the decomposition, per layer."""
    x: np.ndarray  # [L, P, T, D] the attention input of layer l, as the layer sees it
    x_normalized: np.ndarray  # [L, P, T, D] the same before its LayerNorm's gain and bias
    ln_gain: np.ndarray  # [L, D] x = x_normalized * ln_gain + ln_bias
    ln_bias: np.ndarray  # [L, D]
    mask: np.ndarray  # [P, T, T] bool: key s is visible to query d (False on pad queries)
    probs: np.ndarray  # [L, P, n, T, T] the model's attention probabilities
    hidden: np.ndarray  # [P, T, D] the model's last hidden state


@dataclass
class PretrainedModel:
    """A loaded model: its head weights, all other parameters, tokenizer and forward pass."""
    name: str
    path: Path
    architecture: str  # 'bert' or 'gpt2'
    config: dict
    heads: HeadWeights
    params: dict  # every other parameter, by canonical name (see the architecture module)
    tokenizer: object  # tokenizers.Tokenizer, padding and truncation off
    max_positions: int
    causal: bool
    x_meaning: str  # what x (the attention input) is, for the record
    forward_fn: object = field(repr=False, default=None)

    def encode(self, prompts: list[str], prepend_bos: bool = False) -> Encoded:
        return encode(self, prompts, prepend_bos)

    def forward(self, encoded: Encoded) -> AttentionInputs:
        return self.forward_fn(self, encoded)


def _require(package: str) -> None:
    import importlib.util
    if importlib.util.find_spec(package) is None:
        raise PretrainedError(f"reading checkpoints needs {package}: "
                              "pip install 'toymodels[real]'")


def read_config(path: Path) -> dict:
    file = path / "config.json"
    if not file.is_file():
        raise PretrainedError(f"{path} has no config.json; a checkpoint directory holds "
                              "config.json and model.safetensors (Hugging Face format)")
    try:
        config = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PretrainedError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{file} does not hold a JSON object")
    return config


def read_safetensors(path: Path, strip_prefixes=()) -> dict[str, np.ndarray]:
    """All tensors of model.safetensors as NumPy arrays, names without a model prefix."""
    file = path / "model.safetensors"
    if not file.is_file():
        raise PretrainedError(f"{path} has no model.safetensors (other weight formats, "
                              "e.g. pytorch_model.bin, are not read: no PyTorch here)")
    _require("safetensors")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        tensors = load_file(file)
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise PretrainedError(f"{file} is not a readable safetensors file: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    out = {}
    for name, value in tensors.items():
        for prefix in strip_prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        out[name] = value
    return out


def take(tensors: dict, name: str, shape: tuple, file_hint: str) -> np.ndarray:
    """One tensor by name, checked for shape, as float32."""
    if name not in tensors:
        raise PretrainedError(f"{file_hint}: tensor {name!r} is missing")
    value = tensors[name]
    if tuple(value.shape) != tuple(shape):
        raise PretrainedError(f"{file_hint}: tensor {name!r} has shape {tuple(value.shape)}, "
                              f"config.json implies {tuple(shape)}")
    return np.asarray(value, np.float32)


def config_int(config: dict, *names, file_hint: str, default=None) -> int:
    for name in names:
        if name in config:
            value = config[name]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise PretrainedError(f"{file_hint}: {name} must be a positive integer, "
                                      f"got {value!r}")
            return value
    if default is not None:
        return default
    raise PretrainedError(f"{file_hint}: config.json lacks {names[0]}")


def load_tokenizer(path: Path, kind: str):
    """tokenizer.json (padding and truncation switched off: MiniLM's pads to 128), else
    vocab.txt (BERT WordPiece) or vocab.json + merges.txt (GPT-2 byte-level BPE)."""
    _require("tokenizers")
    from tokenizers import Tokenizer
    try:
        if (path / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        elif kind == "bert" and (path / "vocab.txt").is_file():
            from tokenizers.implementations import BertWordPieceTokenizer
            tokenizer = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=True)
        elif kind == "gpt2" and (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            from tokenizers.implementations import ByteLevelBPETokenizer
            tokenizer = ByteLevelBPETokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
        else:
            raise PretrainedError(f"{path} has no tokenizer (tokenizer.json, or "
                                  + ("vocab.txt)" if kind == "bert" else "vocab.json + merges.txt)"))
    except PretrainedError:
        raise
    except Exception as e:  # tokenizers raises plain Exception on malformed files
        raise PretrainedError(f"{path}: cannot read the tokenizer: {e}") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode(ckpt: PretrainedModel, prompts: list[str], prepend_bos: bool = False) -> Encoded:
    """Tokenize without padding or truncation; a prompt longer than the model's positions
    is an error, not silently cut."""
    if not prompts:
        raise AnalysisInputError("no prompts to run")
    encodings = ckpt.tokenizer.encode_batch(list(prompts))
    bos = ckpt.config.get("bos_token_id")
    if prepend_bos and bos is None:
        raise AnalysisInputError(f"{ckpt.name} has no bos_token_id to prepend")
    ids, special, tokens = [], [], []
    for i, enc in enumerate(encodings):
        row, spec, toks = list(enc.ids), list(enc.special_tokens_mask), list(enc.tokens)
        if prepend_bos:
            row, spec = [bos] + row, [1] + spec
            toks = [ckpt.tokenizer.id_to_token(bos) or "<bos>"] + toks
        if not row:
            raise AnalysisInputError(f"prompt {i} has no tokens")
        if len(row) > ckpt.max_positions:
            raise AnalysisInputError(f"prompt {i} has {len(row)} tokens; {ckpt.name} has "
                                     f"{ckpt.max_positions} positions")
        ids.append(row), special.append(spec), tokens.append(toks)
    T = max(len(r) for r in ids)
    pad = ckpt.config.get("pad_token_id") or 0
    out_ids = np.full((len(ids), T), pad, np.int32)
    valid = np.zeros((len(ids), T), bool)
    out_special = np.zeros((len(ids), T), bool)
    for i, (row, spec) in enumerate(zip(ids, special)):
        out_ids[i, :len(row)] = row
        valid[i, :len(row)] = True
        out_special[i, :len(row)] = np.asarray(spec, bool)
    return Encoded(ids=out_ids, valid=valid, special=out_special, tokens=tokens)


def attention_mask(valid: np.ndarray, causal: bool) -> np.ndarray:
    """[P, T, T]: key s visible to query d: both real tokens, and s <= d if causal."""
    T = valid.shape[1]
    mask = valid[:, :, None] & valid[:, None, :]
    if causal:
        mask &= np.tril(np.ones((T, T), bool))[None]
    return mask


def fold_layernorm(heads: HeadWeights, inputs: AttentionInputs):
    """Fold each layer's LayerNorm gain and bias into W_Q, W_K, W_V and their biases, so that
    the head's input is the normalized, centered x: W x = (W diag g) n + W β.
    Returns (HeadWeights, x [L, P, T, D]); logits are unchanged."""
    g = inputs.ln_gain[:, None, None, :]  # [L, 1, 1, D]

    def fold(W, b):
        return W * g, b + np.einsum("lnhd,ld->lnh", W, inputs.ln_bias)

    (W_Q, b_Q), (W_K, b_K), (W_V, b_V) = (fold(heads.W_Q, heads.b_Q), fold(heads.W_K, heads.b_K),
                                          fold(heads.W_V, heads.b_V))
    folded = replace(heads, W_Q=W_Q, W_K=W_K, W_V=W_V, b_Q=b_Q, b_K=b_K, b_V=b_V)
    return folded, inputs.x_normalized
