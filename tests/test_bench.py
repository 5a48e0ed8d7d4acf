"""`inv bench --quick` runs end to end and reports every figure for every system it applies to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Figures a peer cannot take part in: execnet has no module forwarding, and only our
# bootstrap is measured.
ALL = {"transport", "mitogen", "execnet", "fabric", "scp"}
PYTHON_CALLS = {"transport", "mitogen", "execnet"}
SYSTEMS = {
    "cold start, local (import, connect, one call, exit)": PYTHON_CALLS,
    "cold start over ssh ÷ bare `ssh host python -c pass`": PYTHON_CALLS,
    "warm trivial call, local": PYTHON_CALLS,
    "warm trivial call, over ssh": PYTHON_CALLS,
    "pipelined trivial calls, local": PYTHON_CALLS,
    "pipelined trivial calls, over ssh": PYTHON_CALLS,
    "`true` over ssh, per command": {"transport", "mitogen", "execnet", "fabric"},
    "Fabric task: 20 `c.run` on an open connection": {"transport", "fabric"},
    "Fabric task: connect, 20 `c.run`, close": {"transport", "fabric"},
    "push 16 MiB of random data over ssh": {"transport", "fabric", "scp"},
    "first call needing jinja2 on a bare target, over ssh": {"transport", "mitogen"},
    "target RSS above a bare interpreter": PYTHON_CALLS,
    "50 hosts: connect + one call each": {"transport", "fabric"},
    "salt-ssh `test.ping`, one host, whole run": {"transport", "salt-ssh"},
    "salt-ssh `state.apply` of a 3-state sls, one host, whole run": {"transport", "salt-ssh"},
    "bootstrap: payload + first stage": {"transport"},
}


@pytest.mark.timeout(1500)  # on a clean clone, bench/.venv (Salt included) is built first
def test_quick_bench_produces_every_figure(tmp_path):
    inv = os.path.join(os.path.dirname(sys.executable), "inv")
    out = subprocess.run([inv, "bench", "--quick", "--output", str(tmp_path)], capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    names = [figure["name"] for figure in results["figures"]]
    assert set(names) == set(SYSTEMS)
    for figure in results["figures"]:
        assert set(figure["results"]) == SYSTEMS[figure["name"]], figure["name"]
        for summary in figure["results"].values():
            assert summary["median"] > 0
    table = (tmp_path / "latest.md").read_text()
    assert all(name in table for name in names)
