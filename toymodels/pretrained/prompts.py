"""Prompts for the sparse attention decomposition: an IOI-style generator and text files.

  ioi_prompts(n, seed)  "When Mary and John went to the store, John gave a drink to Mary."
  read_prompts(path)    one prompt per line (blank lines skipped)
  parse_prompts(spec)   'ioi:64' or 'ioi:64:SEED' or a file path
"""

import random
from pathlib import Path

from toymodels.errors import AnalysisInputError

MAX_PROMPTS = 1_000_000
"""More prompts than this are refused before any is built (analysis.sad.check_fits then
checks the memory they need)."""

NAMES = ("Mary", "John", "Alice", "Bob", "Sarah", "James", "Emma", "Michael", "Anna", "David",
         "Laura", "Tom", "Kate", "Paul", "Lisa", "Mark", "Rachel", "Daniel", "Julia", "Peter")
PLACES = ("store", "park", "school", "hospital", "office", "restaurant", "garden", "station",
          "library", "beach")
OBJECTS = ("drink", "book", "ring", "kiss", "bone", "basketball", "computer", "necklace",
           "letter", "snack")


def ioi_prompts(n: int, seed: int = 0, names=NAMES, places=PLACES, objects=OBJECTS) -> list[str]:
    """n indirect-object prompts: two distinct names, the second (subject) gives an object to
    the first (the indirect object). Same n and seed, same prompts."""
    if n < 1:
        raise AnalysisInputError(f"ioi prompts: need at least 1, got {n}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        io, subject = rng.sample(list(names), 2)
        place, obj = rng.choice(list(places)), rng.choice(list(objects))
        out.append(f"When {io} and {subject} went to the {place}, {subject} gave a {obj} "
                   f"to {io}.")
    return out


def read_prompts(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise AnalysisInputError(f"prompt file {path} does not exist (or give ioi:N)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AnalysisInputError(f"cannot read prompt file {path}: {e}") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if len(prompts) > MAX_PROMPTS:
        raise AnalysisInputError(f"prompt file {path} has {len(prompts):,} prompts; at most "
                                 f"{MAX_PROMPTS:,} are allowed")
    if not prompts:
        raise AnalysisInputError(f"prompt file {path} is empty; give one prompt per line")
    return prompts


def parse_prompts(spec: str) -> list[str]:
    """'ioi:N' or 'ioi:N:SEED' (generated), else a text file with one prompt per line."""
    if spec.startswith("ioi:"):
        parts = spec.split(":")
        try:
            n = int(parts[1])
            seed = int(parts[2]) if len(parts) == 3 else 0
            if len(parts) > 3:
                raise ValueError
        except (ValueError, IndexError):
            raise AnalysisInputError(f"--prompts {spec!r}: expected ioi:N or ioi:N:SEED, "
                                     "e.g. ioi:64") from None
        check_prompt_count(n, seed, spec)
        return ioi_prompts(n, seed)
    return read_prompts(spec)


def check_prompt_count(n: int, seed: int, spec: str) -> None:
    """A generated prompt set's count and seed, before any prompt is made."""
    from toymodels.configs import MAX_SEED

    if not 1 <= n <= MAX_PROMPTS:
        raise AnalysisInputError(f"--prompts {spec!r}: the count must be in [1, "
                                 f"{MAX_PROMPTS:,}], got {n:,}")
    if not 0 <= seed <= MAX_SEED:
        raise AnalysisInputError(f"--prompts {spec!r}: the seed must be in [0, {MAX_SEED}], "
                                 f"got {seed}")
