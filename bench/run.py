"""Run the benchmarks: `inv bench` (or `python -m bench.run [--quick]`).

Installs the peers (mitogen, execnet, fabric, paramiko, salt) and jinja2 into
bench/.venv from PyPI on first use and re-runs itself there, starts the
tests' private sshd on loopback (as root; targets log in as tp-plain, a user
without shell rc files), then measures every figure for every system in one
process, interleaved, and writes bench/results/latest.md and latest.json.
Each figure is reported as our value and its ratio to each peer measured in
the same run. Peers run with their shipped defaults, as we do (the OpenSSH
client's key exchange and cipher, no compression; Mitogen compresses its ssh
stream and is given our known_hosts file through ssh_args to connect at all;
paramiko, for Fabric and our fan-out, its own defaults). The target
interpreter is /usr/bin/python3, which has no jinja2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venv"
RESULTS = ROOT / "bench" / "results"
PEERS = ["mitogen==0.3.*", "execnet==2.*", "fabric==3.*", "paramiko", "jinja2", "salt==3008.*"]
# The working tree is installed as a plain path entry (.pth), as close as an editable
# install gets to a regular one: setuptools' default editable finder is imported by
# every interpreter the venv starts (~13 ms), which would weigh on each cold start.
EDITABLE_MODE = "compat"


def ensure_environment() -> None:
    """Re-run inside bench/.venv, creating it with the peers installed if needed."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    stamp = VENV / "transport-peers.txt"  # what was installed, so a new peer gets installed
    installed = "\n".join([*PEERS, EDITABLE_MODE])
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.exists() or stamp.read_text() != installed:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT),
                        "--config-settings", f"editable_mode={EDITABLE_MODE}", *PEERS], check=True)
        stamp.write_text(installed)
    os.execv(str(python), [str(python), "-m", "bench.run", *sys.argv[1:]])


@contextlib.contextmanager
def ssh_target():
    """The tests' private sshd on loopback, logged into as a user without shell rc files."""
    import tempfile

    from bench.systems import SshTarget
    from tests.support import sshd

    sshd.ensure_users()
    workdir = Path(tempfile.mkdtemp(prefix="transport-bench-sshd-"))
    # 127.0.0.1 for the single-host figures, and 50 more addresses for the fan-out.
    addresses = ("127.0.0.1", *(f"127.0.1.{i}" for i in range(1, 51)))
    server = sshd.SshServer(workdir, addresses)
    server.start()
    try:
        yield SshTarget(server)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def target_python(requested: str | None) -> str:
    if requested:
        return requested
    # The same interpreter for every system; the system one has no site-packages extras.
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def render(figures, python: str, quick: bool) -> str:
    from bench.stats import ratio

    peers = ["mitogen", "execnet", "fabric", "scp", "salt-ssh"]
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


def _number(value: float) -> str:
    """Three significant digits, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _cell(summary, unit: str) -> str:
    if summary is None:
        return "n/a"
    if summary.runs == 1:
        return f"{_number(summary.median)} {unit}"
    return f"{_number(summary.median)} {unit} ({_number(summary.low)}-{_number(summary.high)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--python", help="target interpreter (default /usr/bin/python3)")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="directory for latest.md and latest.json (default bench/results)")
    options = parser.parse_args()
    ensure_environment()
    # Measure as installed for users: every process this run starts (cold starts,
    # salt-ssh, their targets) writes and uses byte-code caches.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

    from bench import figures as f
    from bench.systems import ALL, ALL_SSH, FAN_OUT

    python = target_python(options.python)
    rounds = 3 if options.quick else 15
    calls = 200 if options.quick else 2000
    batch = 500 if options.quick else 5000
    with ssh_target() as target:
        results = [
            f.cold_start_local(ALL, python, rounds),
            f.cold_start_ssh(ALL, target, python, rounds),
            f.warm_call(ALL, lambda s: s.connect_local(python), "local", rounds, calls),
            f.warm_call(ALL, lambda s: s.connect_ssh(target, python), "over ssh", rounds, calls),
            f.pipelined(ALL, lambda s: s.connect_local(python), "local", rounds, batch),
            f.pipelined(ALL, lambda s: s.connect_ssh(target, python), "over ssh", rounds, batch),
            f.true_over_ssh(ALL_SSH, target, python, rounds, 20 if options.quick else 200),
            *f.fabric_task(target, rounds, 20),
            f.push_file_over_ssh(ALL_SSH, target, python, 2 if options.quick else 5,
                                 (16 if options.quick else 64) * 1024 * 1024),
            f.first_call_needing_jinja2(ALL, target, python, 2 if options.quick else 7),
            *f.salt_ssh(target, 1 if options.quick else 5),
            f.fan_out(FAN_OUT, target, python, 1 if options.quick else 3),
            f.target_rss_local(ALL, python),
            f.bootstrap_size(),
        ]
    table = render(results, python, options.quick)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / "latest.md").write_text(table)
    (options.output / "latest.json").write_text(json.dumps({
        "quick": options.quick, "python": python, "when": time.time(),
        "figures": [{"name": x.name, "unit": x.unit, "lower_is_better": x.lower_is_better,
                     "note": x.note, "results": {k: v.as_dict() for k, v in x.results.items()}}
                    for x in results],
    }, indent=2))
    print(table)


if __name__ == "__main__":
    main()
