"""What the persistent compilation cache saves: the same command twice, each in a fresh
process, the first with an empty cache (it compiles and stores), the second reading it.

  python benchmarks/bench_compile_cache.py [--repeats 2] [-- toymodels args...]

Prints each process's wall time and the ratio second / first, per repeat (a new empty
cache each time), and the baseline with the cache off."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

DEFAULT = ["run", "single-pair", "--seeds", "0-1", "--steps", "300", "--no-progress"]


def timed(args, out, cache) -> float:
    env = os.environ | {"TOYMODELS_COMPILE_CACHE": cache}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "toymodels", *args, "--out", out], check=True,
                   env=env, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("command", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"command: toymodels {' '.join(args.command)}")
        for r in range(args.repeats):
            off = timed(args.command, f"{tmp}/off{r}", "off")
            cache = f"{tmp}/cache{r}"
            first = timed(args.command, f"{tmp}/a{r}", cache)
            second = timed(args.command, f"{tmp}/b{r}", cache)
            print(f"repeat {r}: cache off {off:.1f} s; empty cache {first:.1f} s; "
                  f"warm cache {second:.1f} s; warm / empty {second / first:.2f}, "
                  f"saved {first - second:.1f} s")


if __name__ == "__main__":
    main()
