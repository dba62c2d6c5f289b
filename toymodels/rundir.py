"""The run directory: one format, written and read here (Run.save, load_run).

  DIR/summary.json   family, preset, config, versions, git commit, per-instance records
                     (families/<family>.py: summarize)
  DIR/params.npz     trained parameters [I, ...] (the config's param_shapes)
  DIR/curves.npz     per-step losses [I, steps] (toy: recon, attn; transformer: task, ...)
  DIR/analysis.npz   the spectra and cosines the summary's tables come from
  DIR/dynamics.npz   metrics recorded during training, if any: steps [R], ... [I, R, ...]
  DIR/analysis/      heads.csv, pairs.csv, features.csv, arrays.npz, analysis.json
  DIR/timing.json    training seconds (kept out of summary.json: it varies between reruns)
  DIR/alignment.png  the family's figure, drawn from the files above
  DIR/checkpoints/   with --keep-checkpoints: the training state at kept steps
                     (training/checkpoints.py), read by load_run(DIR).params_at(step)

A Run is the same object in memory (toymodels.train) and read back (load_run), and its
tables are pandas DataFrames with each instance's seed and overrides joined in.
"""

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toymodels.configs import config_class
from toymodels.errors import RunDirError
from toymodels.store import (ANALYSIS_MARKER, claim, git_commit, read_json, staged, versions,
                             write_csv, write_json)

RUN_FILES = ("summary.json", "params.npz", "curves.npz", "analysis.npz")
TABLES = ("heads", "pairs", "features")
"""The analysis tables (analysis/<name>.csv): one row per head, per planted pair, per feature."""


@dataclass
class Run:
    """Trained instances of one config, their records and analysis: in memory after
    toymodels.train, or read back by load_run. Save with run.save(dir)."""

    config: object
    summary: dict
    """summary.json: family, preset, config, versions, git commit, per-instance records."""
    params: dict[str, np.ndarray]
    """Trained parameters [I, ...] (e.g. the toy's W [I, D, N], b [I, N], W_Q, W_K [I, H, D])."""
    curves: dict[str, np.ndarray]
    """Per-step losses [I, steps]."""
    analysis: dict[str, np.ndarray]
    """analysis.npz: the spectra and cosines behind the summary."""
    dynamics: dict[str, np.ndarray] | None = None
    """Metrics recorded during training (if the run recorded any): 'steps' [R], ... [I, R, ...]."""
    run_dir: Path | None = None
    head_analysis: object = None
    """The full metric set (analysis.alignment.HeadAnalysis) of an in-memory run; a loaded
    run reads the same tables from analysis/."""
    timing: dict = field(default_factory=dict)

    # ---- what it holds --------------------------------------------------------------

    @property
    def instances(self) -> list:
        """Each instance's seed and batched hyperparameters (Instance objects)."""
        return [self.config.instance(rec["seed"], **{
                    k: tuple(v) if isinstance(v, list) else v
                    for k, v in rec.get("overrides", {}).items()})
                for rec in self.summary["instances"]]

    def tables(self) -> dict:
        """Every table as a pandas DataFrame: heads, pairs, features (one row per head, per
        planted pair, per feature), curves (one row per instance and step) and dynamics
        (one row per instance and record point; None if none was recorded)."""
        return {**{name: self.table(name) for name in TABLES},
                "curves": self.curves_table(), "dynamics": self.dynamics_table()}

    def table(self, name: str):
        """One analysis table (heads, pairs or features) with seed and overrides joined."""
        import pandas as pd

        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; choose one of {', '.join(TABLES)}")
        if self.head_analysis is not None:
            frame = _frame(getattr(self.head_analysis, name))
        elif self.run_dir is not None and (self.run_dir / "analysis" / f"{name}.csv").exists():
            frame = pd.read_csv(self.run_dir / "analysis" / f"{name}.csv")
        else:
            raise RunDirError(f"{self.run_dir}: no analysis/{name}.csv; recompute it with "
                              f"toymodels analyze {self.run_dir}")
        return self._join(frame)

    def curves_table(self):
        """Losses per instance and step: instance, seed, overrides, step, one column each."""
        import pandas as pd

        I, steps = next(iter(self.curves.values())).shape
        frame = pd.DataFrame({"instance": np.repeat(np.arange(I), steps),
                              "step": np.tile(np.arange(steps), I),
                              **{k: v.reshape(-1) for k, v in self.curves.items()}})
        return self._join(frame)

    def dynamics_table(self):
        """Recorded metrics per instance and record point (scalars, and vectors as name_k
        columns); parameter snapshots are left out (they are in run.dynamics)."""
        import pandas as pd

        if not self.dynamics:
            return None
        steps = np.asarray(self.dynamics["steps"])
        I = len(self.summary["instances"])
        columns = {"instance": np.repeat(np.arange(I), len(steps)),
                   "step": np.tile(steps, I)}
        for name, values in self.dynamics.items():
            if name == "steps" or name.startswith("param_"):
                continue
            values = np.asarray(values).reshape(I * len(steps), -1)
            if values.shape[1] == 1:
                columns[name] = values[:, 0]
            else:
                columns |= {f"{name}_{k}": values[:, k] for k in range(values.shape[1])}
        return self._join(pd.DataFrame(columns))

    def _join(self, frame):
        """frame with each row's instance seed and overrides (tuples as JSON text)."""
        import json

        import pandas as pd

        if "instance" not in frame.columns:
            return frame
        per_instance = pd.DataFrame(
            [{"instance": n, "seed": rec["seed"],
              **{k: json.dumps(v) if isinstance(v, list) else v
                 for k, v in rec.get("overrides", {}).items()}}
             for n, rec in enumerate(self.summary["instances"])])
        clash = [c for c in per_instance.columns if c in frame.columns and c != "instance"]
        return per_instance.drop(columns=clash).merge(frame, on="instance", how="right")

    # ---- on disk -------------------------------------------------------------------

    def save(self, out_dir, overwrite: bool = False) -> Path:
        """Write the run directory at out_dir (atomically; an existing run is replaced only
        with overwrite, and only where toymodels wrote every file). Returns the path."""
        with claim(out_dir, overwrite) as out, staged(out, overwrite) as staging:
            self.write(staging, out.name)
        self.run_dir = Path(out_dir)
        return self.run_dir

    def write(self, folder: Path, name: str) -> None:
        """The run's files into folder (a staging folder: see save)."""
        from toymodels.families import family_of

        if self.head_analysis is None:
            raise RunDirError("only a run trained in this process can be written; copy a "
                              "stored run's directory instead")
        write_json(folder / "summary.json", self.summary)
        np.savez(folder / "params.npz", **self.params)
        np.savez(folder / "curves.npz", **self.curves)
        np.savez(folder / "analysis.npz", **self.analysis)
        if self.dynamics is not None:
            np.savez(folder / "dynamics.npz", **self.dynamics)
        family = family_of(self.config)
        write_analysis(folder / "analysis", self.head_analysis,
                       analysis_meta(name, self.config, family))
        if self.timing:  # varies between identical runs, so it stays out of summary.json
            write_json(folder / "timing.json", self.timing)
        family.figure(self, folder / "alignment.png")

    # ---- training checkpoints kept in the directory ----------------------------------

    @property
    def checkpoint_steps(self) -> list[int]:
        """Steps at which the run kept its training state (--keep-checkpoints), ascending;
        [] if it kept none."""
        if self.run_dir is None or not (self.run_dir / "checkpoints").is_dir():
            return []
        return self._checkpoints().steps

    def params_at(self, step: int) -> dict[str, np.ndarray]:
        """Parameters after `step` training steps, from a kept checkpoint, named and shaped
        as params (W [I, D, N], ...). RunDirError if that step was not kept or its files
        are damaged."""
        return self._checkpoints().params_at(step)

    def _checkpoints(self):
        from toymodels.training.checkpoints import read_checkpoints
        if self.run_dir is None:
            raise RunDirError("this run was not read from a directory: it has no checkpoints")
        return read_checkpoints(self.run_dir / "checkpoints")


LoadedRun = Run
"""The name load_run's result had before runs lived in memory too."""


def _frame(rows: list[dict]):
    """rows as the DataFrame their CSV reads back as, so that a table in memory equals the
    same table loaded from disk (None -> NaN, the same dtypes)."""
    import pandas as pd

    buffer = io.StringIO()
    write_csv(buffer, rows)
    buffer.seek(0)
    return pd.read_csv(buffer)


def load_run(run_dir) -> "Run":
    """Read a run directory back: config, summary, parameters, loss curves, analysis arrays.
    A missing, truncated or malformed file raises RunDirError naming it.

    A run made with --keep-checkpoints also gives its parameters during training:
    `load_run(d).checkpoint_steps` lists the kept steps, `load_run(d).params_at(step)`
    returns {name: [I, ...]} after that many steps (the last kept step is the final one)."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise RunDirError(f"load_run needs a run directory's path, got {run_dir!r}")
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).exists()]
    if missing:
        raise RunDirError(f"{run_dir} is not a toymodels run (missing {', '.join(missing)})")
    summary = read_json(run_dir / "summary.json", "run summary")
    try:
        config = config_class(summary.get("family", "toy")).from_dict(summary["config"])
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise RunDirError(f"{run_dir}/summary.json has an unreadable config: {e}") from None
    required = {"params": tuple(config.param_shapes(1)), "curves": config.STORED_CURVES}
    instances = summary.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RunDirError(f"{run_dir}/summary.json lists no instances")
    params = _load_npz(run_dir / "params.npz", required["params"])
    _check_param_shapes(run_dir, params, config.param_shapes(len(instances)))
    return Run(config=config, summary=summary,
                     params=params,
                     curves=_load_npz(run_dir / "curves.npz", required["curves"]),
                     analysis=_load_npz(run_dir / "analysis.npz"),
                     dynamics=_load_npz(run_dir / "dynamics.npz")
                     if (run_dir / "dynamics.npz").exists() else None,
                     run_dir=run_dir)


def _load_npz(path: Path, required=()) -> dict[str, np.ndarray]:
    """Numeric arrays from an .npz, headers checked before allocating, never unpickling;
    RunDirError naming the file else."""
    from toymodels.arrays import read_npz

    arrays = read_npz(path, RunDirError)
    missing = [k for k in required if k not in arrays]
    if missing:
        raise RunDirError(f"{path} lacks {', '.join(missing)}")
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise RunDirError(f"{path}: {k} holds {a.dtype} values, not numbers")
    return arrays


def _check_param_shapes(run_dir, params, expected) -> None:
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise RunDirError(f"{run_dir}/params.npz: {name} has shape {params[name].shape}, "
                              f"but summary.json's config and instances say {shape}; the "
                              "files come from different runs")




# ---- the analysis folder (a run's analysis/, or analyze --out) ----------------------


def analysis_meta(run_name: str, cfg, family, rel_tol: float | None = None,
                  seed: int = 0) -> dict:
    """analysis.json of a run's own analysis: what was analysed, against which templates."""
    from toymodels.analysis.svd import DEFAULT_REL_TOL

    return {"source": "run", "run": str(run_name), **family.templates(cfg),
            "rel_tol": DEFAULT_REL_TOL if rel_tol is None else rel_tol, "seed": seed}


def _write_analysis_files(folder: Path, analysis, meta: dict) -> None:
    write_csv(folder / "heads.csv", analysis.heads)
    write_csv(folder / "pairs.csv", analysis.pairs)
    write_csv(folder / "features.csv", analysis.features)
    np.savez(folder / "arrays.npz", **analysis.arrays)
    write_json(folder / ANALYSIS_MARKER, {**meta, "axes": list(analysis.axes),
                                          "versions": versions(), "git_commit": git_commit()})


def write_analysis(out_dir, analysis, meta: dict, overwrite: bool = False) -> Path:
    """Write an analysis as out_dir/{heads,pairs,features}.csv, arrays.npz and
    analysis.json (what was analysed, and how), atomically; with overwrite it replaces a
    previous analysis in out_dir (never a folder that holds anything else)."""
    out = Path(out_dir)
    with claim(out, overwrite=overwrite, marker=ANALYSIS_MARKER), \
            staged(out, overwrite=overwrite, marker=ANALYSIS_MARKER) as staging:
        _write_analysis_files(staging, analysis, meta)
    return out
