"""Per-check CPU and wall seconds of `toymodels theory` (quick profile by default).

    python benchmarks/bench_theory.py --out runs/bench-theory [--only multi_pair,isotropy]

On a shared machine wall time measures the load as much as the code; process CPU time
(all of this process's threads: XLA's, BLAS's, Python's) is what a before/after
comparison of the code should use. Writes DIR/bench.json (seconds per check, the 1-minute
load average before and after each check) and DIR/rows.json (every row, to compare values
bit for bit between two versions: `--compare OTHER/rows.json`). --together runs them as
`toymodels theory` does (run_checks), with wall seconds per check and the total.
"""

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--together", action="store_true", help="run them as `toymodels theory` "
                    "does (run_checks: multi_pair beside the rest); total seconds only")
    ap.add_argument("--compare", default=None, help="rows.json of another run: report "
                    "every value that differs")
    args = ap.parse_args()
    from toymodels.theory import checks
    profile = checks.PROFILES["full" if args.full else "quick"]
    only = args.only.split(",") if args.only else list(checks.CHECKS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench, rows = {}, []
    t_all, c_all = time.perf_counter(), time.process_time()
    if args.together:
        load0 = os.getloadavg()[0]
        rows, _, seconds = checks.run_checks(profile, only)
        bench = {name: {"wall_s": round(s, 1)} for name, s in seconds.items()}
        bench["load"] = {"before": load0, "after": os.getloadavg()[0]}
        print(" ".join(f"{k} {v['wall_s']}" for k, v in bench.items() if "wall_s" in v))
    for name in only if not args.together else []:
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        r, _ = checks.CHECKS[name](profile)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        bench[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                       "load_before": load0, "load_after": os.getloadavg()[0]}
        rows += r
        print(f"{name:<16} wall {wall:7.1f} s  cpu {cpu:7.1f} s  load {load0:.2f} -> "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    total = {"wall_s": round(time.perf_counter() - t_all, 1),
             "cpu_s": round(time.process_time() - c_all, 1)}
    print(f"{'total':<16} wall {total['wall_s']:7.1f} s  cpu {total['cpu_s']:7.1f} s")
    (out / "bench.json").write_text(json.dumps({"checks": bench, "total": total,
                                                "profile": profile.name}, indent=1))
    (out / "rows.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        other = {(r["check"], r["prediction"]): r for r in other}
        diffs, matched = 0, 0
        for r in rows:
            o = other.get((r["check"], r["prediction"]))
            if o is None:
                print(f"NOT IN OTHER {r['check']}: {r['prediction'][:60]}")
                continue
            matched += 1
            mine = json.loads(json.dumps(r, ensure_ascii=False))
            if {k: v for k, v in o.items() if k != "seconds"} != \
                    {k: v for k, v in mine.items() if k != "seconds"}:
                diffs += 1
                print(f"DIFFERS {r['check']}: {r['prediction'][:60]}: {o['measured']!r} -> "
                      f"{r['measured']!r}")
        print(f"{diffs} of {matched} rows differ ({len(rows)} rows here, {len(other)} there)")


if __name__ == "__main__":
    main()
