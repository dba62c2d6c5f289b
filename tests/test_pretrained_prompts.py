"""Prompts for `toymodels sad` (pretrained/prompts.py): generated IOI prompts and prompt files."""

import pytest

from toymodels.errors import AnalysisInputError
from toymodels.pretrained.prompts import ioi_prompts, parse_prompts, read_prompts


def test_ioi_prompts_and_files(tmp_path):
    a, b = ioi_prompts(5, seed=3), ioi_prompts(5, seed=3)
    assert a == b and a != ioi_prompts(5, seed=4) and parse_prompts("ioi:5:3") == a
    for prompt in a:
        words = prompt.replace(",", "").rstrip(".").split()
        io, subject = words[1], words[3]
        assert io != subject and words[-1] == io and words[-6] == subject
    path = tmp_path / "p.txt"
    path.write_text("first prompt\n\n  second prompt  \n")
    assert read_prompts(path) == ["first prompt", "second prompt"]
    path.write_text("\n \n")
    with pytest.raises(AnalysisInputError, match="empty"):
        parse_prompts(str(path))
    with pytest.raises(AnalysisInputError, match="ioi:N"):
        parse_prompts("ioi:many")
