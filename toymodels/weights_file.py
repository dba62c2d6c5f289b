"""`analyze WEIGHTS --features F`: the alignment analysis of heads stored in a weights file
(.npz or .safetensors, toymodels' or TransformerLens' layout) against a feature
dictionary (.npy, or an SAELens SAE folder), written as an analysis folder."""

from pathlib import Path

from toymodels.store import ANALYSIS_MARKER, check_out_dir


def analyze_weights_file(path, features_path, out, *, template=(), axes=None,
                         rel_tol: float, seed: int = 0, layout=None,
                         overwrite: bool = False) -> Path:
    """Analyse every head in the weights file at path against the features at
    features_path; writes out/{heads,pairs,features}.csv, arrays.npz, analysis.json.
    The output folder is checked before anything is read (RunDirError)."""
    from toymodels.analysis.alignment import analyze, check_axes
    from toymodels.interop.saelens import read_features
    from toymodels.interop.transformer_lens import read_head_weights
    from toymodels.rundir import write_analysis

    path, out = Path(path), Path(out)
    axes = None if axes is None else check_axes(tuple(axes))
    check_out_dir(out, overwrite, marker=ANALYSIS_MARKER)  # before any work
    weights, weights_info = read_head_weights(path, layout)
    features, features_info = read_features(Path(features_path))
    analysis = analyze(features, **weights, template=template, axes=axes, rel_tol=rel_tol,
                       seed=seed, layout=layout)
    return write_analysis(out, analysis, {
        "source": str(path), "features": str(features_path),
        "template": [list(p) for p in template], "rel_tol": rel_tol, "seed": seed,
        "layout": analysis.layout, "weights": weights_info, "features_info": features_info},
        overwrite=overwrite)
