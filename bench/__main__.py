"""`make bench`: every bench/bench_*.py in turn; each writes its own section of BENCHMARKS.md.

`python -m bench prepare training` runs only the named ones.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    chosen = argv or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}")
        return 2
    for name in chosen:
        print(f"== bench {name}", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"bench.bench_{name}").main()
        print(f"== bench {name} done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
