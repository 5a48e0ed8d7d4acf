"""`inv bench --quick` runs end to end and reports every figure for every system it applies to."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Figures a peer cannot take part in: execnet has no module forwarding, and only our
# bootstrap is measured.
NOT_APPLICABLE = {
    "first call needing jinja2 on a bare target, over ssh": {"execnet"},
    "bootstrap: payload + first stage": {"mitogen", "execnet"},
}


def test_quick_bench_produces_every_figure(tmp_path):
    inv = os.path.join(os.path.dirname(sys.executable), "inv")
    out = subprocess.run([inv, "bench", "--quick", "--output", str(tmp_path)], capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    names = [figure["name"] for figure in results["figures"]]
    assert len(names) == 9
    for figure in results["figures"]:
        expected = {"transport", "mitogen", "execnet"} - NOT_APPLICABLE.get(figure["name"], set())
        assert set(figure["results"]) == expected, figure["name"]
        for summary in figure["results"].values():
            assert summary["median"] > 0
    table = (tmp_path / "latest.md").read_text()
    assert all(name in table for name in names)
