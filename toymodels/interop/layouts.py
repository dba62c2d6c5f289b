"""Weight layouts: which axis of an attention weight is the residual one.

Shapes (per head; leading head axes such as [layer, head] come first and are not touched):
  D residual width (d_model), H head dim (d_head)

  layout            W_Q, W_K, W_V      W_O        reads as
  toymodels         [H, D]             [D, H]     q = W_Q x,   out = W_O z
  transformer_lens  [D, H] (d_model,   [H, D]     q = x W_Q,   out = z W_O
                     d_head)

One layout is the other with the last two axes swapped. Where D = H a weight fits both,
and reading it in the wrong one decomposes the wrong matrix (W_Q W_Kᵀ instead of W_Qᵀ W_K)
without any error: so a layout is named, never guessed. Without a name, weights are read
as toymodels' only where no other layout fits their shapes; otherwise LayoutError says
which name to give.
"""

import numpy as np

from toymodels.errors import LayoutError

LAYOUTS = ("toymodels", "transformer_lens")

HEAD_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O")

_D_AXIS = {  # where the residual axis D sits, per layout and weight
    "toymodels": {"W_Q": -1, "W_K": -1, "W_V": -1, "W_O": -2},
    "transformer_lens": {"W_Q": -2, "W_K": -2, "W_V": -2, "W_O": -1},
}


def check_layout(layout) -> str | None:
    """A layout name (hyphens read as underscores: 'transformer-lens'), or None."""
    if layout is None:
        return None
    name = str(layout).replace("-", "_")
    if name not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    return name


def fits(weights: dict, D: int, layout: str) -> bool:
    """Whether every weight has its residual axis of length D where `layout` puts it."""
    return all(a.ndim >= 2 and a.shape[_D_AXIS[layout][name]] == D
               for name, a in weights.items())


def to_toymodels(weights: dict, D: int, layout=None) -> dict:
    """The head weights {W_Q, W_K, W_V, W_O: array} in toymodels' layout.

    layout: a name from LAYOUTS, or None: then the weights must fit toymodels' layout and
    no other (LayoutError otherwise, naming the layout to give)."""
    layout = check_layout(layout)
    if layout is None and weights:
        matching = [name for name in LAYOUTS if fits(weights, D, name)]
        if len(matching) > 1:
            shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in weights.items())
            raise LayoutError(
                f"weights {shapes} fit both the toymodels ([H, D]) and the TransformerLens "
                f"([d_model, d_head]) layout, since D = H = {D}; name it: layout="
                "'transformer_lens' (--layout transformer_lens) or 'toymodels'")
        if matching == ["transformer_lens"]:
            raise LayoutError(
                "weights are in the TransformerLens layout (W_Q [..., d_model, d_head], W_O "
                "[..., d_head, d_model]); name it: layout='transformer_lens' "
                "(--layout transformer_lens)")
        return dict(weights)  # toymodels' (or neither: the caller's shape checks say why)
    if layout in (None, "toymodels"):
        return dict(weights)
    return {name: np.swapaxes(a, -1, -2) if a.ndim >= 2 else a for name, a in weights.items()}
