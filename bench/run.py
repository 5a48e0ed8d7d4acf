"""Run the benchmarks: `inv bench` (or `python -m bench.run [--quick]`).

Installs the peers (mitogen, execnet, fabric, paramiko) into bench/.venv from
PyPI on first use and re-runs itself there, then measures every figure for
every system in one process, interleaved, and writes bench/results/latest.md
and latest.json. Each figure is reported as our value and its ratio to each
peer measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venv"
RESULTS = ROOT / "bench" / "results"
PEERS = ["mitogen==0.3.*", "execnet==2.*", "fabric==3.*", "paramiko"]


def ensure_environment() -> None:
    """Re-run inside bench/.venv, creating it with the peers installed if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT), *PEERS], check=True)
    os.execv(str(python), [str(python), "-m", "bench.run", *sys.argv[1:]])


def target_python(requested: str | None) -> str:
    if requested:
        return requested
    # The same interpreter for every system; the system one has no site-packages extras.
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def render(figures, python: str, quick: bool) -> str:
    from bench.stats import ratio

    peers = ["mitogen", "execnet"]
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} ({os.cpu_count()} CPUs), "
        f"target {python}, {'quick' if quick else 'full'} mode. Median (min-max) of interleaved runs.",
        "",
        "| figure | transport | " + " | ".join(peers) + " | " + " | ".join(f"÷ {p}" for p in peers) + " |",
        "|---|---|" + "---|" * (2 * len(peers)),
    ]
    for figure in figures:
        ours = figure.results.get("transport")
        cells = [figure.name + (f" ({figure.note})" if figure.note else ""),
                 _cell(ours, figure.unit)]
        cells += [_cell(figure.results.get(p), figure.unit) for p in peers]
        for p in peers:
            theirs = figure.results.get(p)
            cells.append(f"{ratio(ours.median, theirs.median):.2f}×" if ours and theirs else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(summary, unit: str) -> str:
    if summary is None:
        return "n/a"
    if summary.runs == 1:
        return f"{summary.median:,.1f} {unit}"
    return f"{summary.median:,.1f} {unit} ({summary.low:,.1f}-{summary.high:,.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--python", help="target interpreter (default /usr/bin/python3)")
    options = parser.parse_args()
    ensure_environment()

    from bench import figures as f
    from bench.systems import ALL

    python = target_python(options.python)
    rounds = 3 if options.quick else 15
    results = [
        f.cold_start_local(ALL, python, rounds),
        f.warm_call_local(ALL, python, rounds, 200 if options.quick else 2000),
        f.pipelined_local(ALL, python, rounds, 500 if options.quick else 5000),
        f.target_rss_local(ALL, python),
        f.bootstrap_size(),
    ]
    table = render(results, python, options.quick)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(table)
    (RESULTS / "latest.json").write_text(json.dumps({
        "quick": options.quick, "python": python, "when": time.time(),
        "figures": [{"name": x.name, "unit": x.unit, "lower_is_better": x.lower_is_better,
                     "note": x.note, "results": {k: v.as_dict() for k, v in x.results.items()}}
                    for x in results],
    }, indent=2))
    print(table)


if __name__ == "__main__":
    main()
