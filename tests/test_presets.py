"""The paper's one-pair results at full size, on four seeds (the quickstart and
`toymodels run single-pair --seeds 0-7` show all eight)."""

import numpy as np

from toymodels.configs import make_instances, preset
from toymodels.run import run


def test_single_pair_aligns_in_every_seed(tmp_path):
    cfg = preset("single-pair")
    summary = run("single-pair", cfg, make_instances(cfg, range(4)), tmp_path / "run",
                  progress=False)
    for inst in summary["instances"]:
        (pair,) = inst["pairs"]
        s = np.asarray(inst["singular_values"])
        assert pair["sv_index"] == 0
        assert pair["cos_query_u"] >= 0.99 and pair["cos_key_v"] >= 0.99, inst["seed"]
        assert s[1] <= 0.05 * s[0], inst["seed"]
        # Figure 3: the head aligns first, then the attended features leave superposition.
        dyn = inst["dynamics"]
        assert dyn["step_alignment_above"] is not None
        assert dyn["step_interference_below"] is not None
        assert dyn["step_alignment_above"] < dyn["step_interference_below"], inst["seed"]
