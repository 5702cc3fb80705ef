"""`python -m bench [name ...]`: run every benchmark module (or those named) and print its figures.

Figures are printed as ratios against a baseline measured in the same run on the same machine, so
they mean the same on a fast or a slow box.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

from rich.console import Console

console = Console()


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = argv or discover()
    failed = 0
    results = {}
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            continue
        console.rule(f"bench {name}")
        started = time.perf_counter()
        try:
            results[name] = module.run()
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            failed += 1
            console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}[/red]")
            continue
        console.print(json.dumps(results[name], indent=2, default=str))
        console.print(f"({time.perf_counter() - started:.1f}s)")
    out = Path(".state/bench-results.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
