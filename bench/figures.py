"""The figures: each times one operation for every system, interleaved round by round.

Interleaving (A B C A B C ...) after a warm-up spreads the machine's drift
evenly over the systems, so the ratios compare like with like.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from bench.stats import Summary
from bench.systems import Connection, System


@dataclass
class Figure:
    name: str
    unit: str
    lower_is_better: bool
    results: dict[str, Summary] = field(default_factory=dict)
    note: str = ""


def timed_run(args: list[str], timeout: float = 60) -> float:
    """Run a command to its end; return its wall time in milliseconds.

    It waits in one blocking waitpid: subprocess's wait(timeout=...) polls
    with sleeps growing to 50 ms, which would round every process's time up
    to the next poll (a 66 ms run measured 114 ms). A timer kills a command
    that outlives the timeout.
    """
    started = time.perf_counter()
    process = subprocess.Popen(args)
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    try:
        status = process.wait()
    finally:
        killer.cancel()
    elapsed = (time.perf_counter() - started) * 1000
    if status:
        raise subprocess.CalledProcessError(status, args)
    return elapsed


def cold_start_local(systems: list[System], python: str, rounds: int) -> Figure:
    figure = Figure("cold start, local (import, connect, one call, exit)", "ms", True)
    samples: dict[str, list[float]] = {s.name: [] for s in systems}
    for round_number in range(rounds + 1):
        for system in systems:
            elapsed = timed_run([sys.executable, "-c", system.cold_script, python])
            if round_number:  # round 0 is the warm-up (it also writes byte-code caches)
                samples[system.name].append(elapsed)
    figure.results = {name: Summary.of(values) for name, values in samples.items()}
    return figure


def _per_connection(systems: list[System], connect, rounds: int, measure) -> dict[str, list[float]]:
    """Open one connection per system, warm each up, then measure them round by round.

    A system that cannot do what is measured (NotImplementedError) is left out.
    """
    connections: dict[str, Connection] = {}
    for system in systems:
        try:
            connections[system.name] = connect(system)
        except NotImplementedError:
            continue
    try:
        for name, connection in list(connections.items()):
            try:
                measure(connection, warmup=True)
            except NotImplementedError:
                connection.close()
                del connections[name]
        samples: dict[str, list[float]] = {name: [] for name in connections}
        for _ in range(rounds):
            for name, connection in connections.items():
                samples[name].append(measure(connection, warmup=False))
        return samples
    finally:
        for connection in connections.values():
            connection.close()


def warm_call(systems: list[System], connect, where: str, rounds: int, calls: int) -> Figure:
    figure = Figure(f"warm trivial call, {where}", "µs", True)

    def measure(connection: Connection, warmup: bool) -> float:
        count = calls // 4 if warmup else calls
        started = time.perf_counter()
        for _ in range(count):
            connection.call_trivial()
        return (time.perf_counter() - started) / count * 1e6

    samples = _per_connection(systems, connect, rounds, measure)
    figure.results = {name: Summary.of(values) for name, values in samples.items()}
    return figure


def pipelined(systems: list[System], connect, where: str, rounds: int, calls: int) -> Figure:
    figure = Figure(f"pipelined trivial calls, {where}", "calls/s", False)

    def measure(connection: Connection, warmup: bool) -> float:
        count = calls // 4 if warmup else calls
        started = time.perf_counter()
        connection.pipelined(count)
        return count / (time.perf_counter() - started)

    samples = _per_connection(systems, connect, rounds, measure)
    figure.results = {name: Summary.of(values) for name, values in samples.items()}
    return figure


def cold_start_ssh(systems: list[System], target, python: str, rounds: int) -> Figure:
    """Each system's cold start over ssh divided by a bare `ssh host python -c pass`."""
    figure = Figure("cold start over ssh ÷ bare `ssh host python -c pass`", "×", True)
    bare = ["ssh", *target.ssh_args(), python, "-c", "pass"]
    ratios: dict[str, list[float]] = {s.name: [] for s in systems}
    bare_times = []
    for round_number in range(rounds + 1):
        bare_ms = timed_run(bare)
        bare_times.append(bare_ms)
        for system in systems:
            elapsed = timed_run([sys.executable, "-c", system.cold_ssh_script(target, python)])
            if round_number:
                ratios[system.name].append(elapsed / bare_ms)
    figure.results = {name: Summary.of(values) for name, values in ratios.items()}
    figure.note = f"bare ssh: {Summary.of(bare_times[1:]).median:.0f} ms"
    return figure


def first_call_needing_jinja2(systems: list[System], target, python: str, rounds: int) -> Figure:
    """A fresh target without jinja2: time of the first call that imports it, and round trips."""
    figure = Figure("first call needing jinja2 on a bare target, over ssh", "s", True)
    samples: dict[str, list[float]] = {}
    trips: dict[str, int] = {}
    for _ in range(rounds):
        for system in systems:
            connection = system.connect_ssh(target, python)
            try:
                started = time.perf_counter()
                try:
                    connection.render()
                except NotImplementedError:
                    break
                samples.setdefault(system.name, []).append(time.perf_counter() - started)
                trips[system.name] = connection.round_trips()
            finally:
                connection.close()
    figure.results = {name: Summary.of(values) for name, values in samples.items()}
    figure.note = "module round trips: " + ", ".join(f"{k} {v}" for k, v in trips.items())
    return figure


def true_over_ssh(systems: list[System], target, python: str, rounds: int, count: int) -> Figure:
    figure = Figure("`true` over ssh, per command", "ms", True)

    def measure(connection: Connection, warmup: bool) -> float:
        # Up to `count` commands, or one second's worth for slow systems (at least 3).
        limit = max(1, count // 4) if warmup else count
        started = time.perf_counter()
        done = 0
        while done < limit and (done < 3 or time.perf_counter() - started < 1.0):
            connection.run_true()
            done += 1
        return (time.perf_counter() - started) / done * 1000

    samples = _per_connection(systems, lambda s: s.connect_ssh(target, python), rounds, measure)
    figure.results = {name: Summary.of(values) for name, values in samples.items()}
    return figure


def fabric_task(target, rounds: int, commands: int) -> list[Figure]:
    """A Fabric task of `commands` c.run calls on one host: our Connection against stock Fabric's.

    Both go through Fabric's Connection API as `fab` does (the same per-process start-up
    of `fab` itself is left out). Two figures: the commands on an open connection, and
    the whole task (connect, commands, close, as the adapter's executor does at the end).
    """
    from bench.systems import fabric_task_connections

    warm = Figure(f"Fabric task: {commands} `c.run` on an open connection", "ms", True)
    whole = Figure(f"Fabric task: connect, {commands} `c.run`, close", "ms", True)
    samples: dict[str, tuple[list[float], list[float]]] = {}
    for round_number in range(rounds + 1):
        for name, open_connection in fabric_task_connections(target):
            started = time.perf_counter()
            connection, close = open_connection()
            connected = time.perf_counter()
            for _ in range(commands):
                connection.run("true", hide=True)
            ran = time.perf_counter()
            close()
            closed = time.perf_counter()
            if round_number:
                runs, totals = samples.setdefault(name, ([], []))
                runs.append((ran - connected) * 1000)
                totals.append((closed - started) * 1000)
    warm.results = {name: Summary.of(runs) for name, (runs, _) in samples.items()}
    whole.results = {name: Summary.of(totals) for name, (_, totals) in samples.items()}
    return [warm, whole]


def salt_ssh(target, rounds: int) -> list[Figure]:
    """salt-ssh, one host, one-shot CLI runs: a host with `transport: fast` against a stock one.

    Whole `salt-ssh` runs (master start-up included, the same for both), after a
    warm-up run that deploys the thin tarball (stock) or fills the file cache (fast).
    """
    import re
    import shutil
    import tempfile
    from pathlib import Path

    from tests.support.salt import SaltSetup
    from tests.support.sshd import SUDO_PASSWORD

    setup = SaltSetup(Path(tempfile.mkdtemp(prefix="transport-bench-salt-")), target.server,
                      SUDO_PASSWORD)
    sent = re.compile(r"salt file cache on \S+: \d+ files \((\d+) bytes\) sent|"
                      r"salt files sent to \S+ on first import \(or before a fork\): "
                      r"\d+ files \((\d+) bytes\)")
    # The fast host's user starts with a cold file cache, so the first run shows what travels.
    shutil.rmtree("/home/tp-app/.cache/transport-salt", ignore_errors=True)
    figures = []
    try:
        for name, args in (("`test.ping`", ["test.ping"]),
                           ("`state.apply` of a 3-state sls", ["state.apply", "demo"])):
            figure = Figure(f"salt-ssh {name}, one host, whole run", "s", True)
            samples: dict[str, list[float]] = {"transport": [], "salt-ssh": []}
            cache_bytes: list[int] = []
            for round_number in range(rounds + 1):
                for system, host in (("transport", "fast"), ("salt-ssh", "stock")):
                    started = time.perf_counter()
                    result = setup.run(host, "-l", "info", *args)
                    elapsed = time.perf_counter() - started
                    if result.returncode != 0:
                        raise RuntimeError(f"salt-ssh {host} {args} failed (status "
                                           f"{result.returncode}):\n{result.stdout[-3000:]}\n"
                                           f"{result.stderr[-2000:]}")
                    if system == "transport":
                        found = sent.findall(result.stdout + result.stderr)
                        cache_bytes.append(sum(int(a or b) for a, b in found))
                    if round_number:
                        samples[system].append(elapsed)
            figure.results = {k: Summary.of(v) for k, v in samples.items()}
            figure.note = ("Salt files sent to the fast host, run by run: "
                           + ", ".join(f"{b:,} B" for b in cache_bytes))
            figures.append(figure)
    finally:
        setup.remove_thin_dirs()
        shutil.rmtree(setup.root, ignore_errors=True)
        for host in ("stock", "fast"):  # what the demo state made
            shutil.rmtree(f"/tmp/transport-salt-test-{host}", ignore_errors=True)
    return figures


def push_file_over_ssh(systems: list[System], target, python: str, rounds: int, size: int) -> Figure:
    figure = Figure(f"push {size // (1024 * 1024)} MiB of random data over ssh", "MiB/s", False)
    import tempfile

    source = tempfile.NamedTemporaryFile(prefix="transport-bench-", delete=False)
    try:
        source.write(os.urandom(size))
        source.close()
        destination = f"/home/{target.user}/bench-push.bin"

        def measure(connection: Connection, warmup: bool) -> float:
            started = time.perf_counter()
            connection.push(source.name, destination)
            return size / (time.perf_counter() - started) / (1024 * 1024)

        samples = _per_connection(systems, lambda s: s.connect_ssh(target, python), rounds, measure)
    finally:
        os.unlink(source.name)
    figure.results = {name: Summary.of(values) for name, values in samples.items()}
    return figure


def fan_out(systems: list[System], target, python: str, rounds: int) -> Figure:
    """Connect to 50 hosts (separate connections to loopback addresses) and run one thing on each.

    Wall time, and the controller's CPU (its own and its children's, such as ssh clients).
    """
    import resource

    hosts = [a for a in target.server.addresses if a.startswith("127.0.1.")]
    figure = Figure(f"{len(hosts)} hosts: connect + one call each", "s", True)
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    for _ in range(rounds):
        for system in systems:
            before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                           resource.RUSAGE_CHILDREN)]
            started = time.perf_counter()
            system.fan_out(target, hosts, python)
            walls.setdefault(system.name, []).append(time.perf_counter() - started)
            after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN)]
            cpus.setdefault(system.name, []).append(sum(
                (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime) for a, b in zip(after, before)))
    figure.results = {name: Summary.of(values) for name, values in walls.items()}
    figure.note = "controller CPU: " + ", ".join(
        f"{name} {Summary.of(values).median:.2f} s" for name, values in cpus.items())
    return figure


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def target_rss_local(systems: list[System], python: str) -> Figure:
    figure = Figure("target RSS above a bare interpreter", "MiB", True)
    bare = subprocess.Popen([python, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)
        bare_kib = _rss_kib(bare.pid)
    finally:
        bare.communicate(b"")
    for system in systems:
        connection = system.connect_local(python)
        try:
            connection.call_trivial()
            extra = (_rss_kib(connection.target_pid()) - bare_kib) / 1024
        finally:
            connection.close()
        figure.results[system.name] = Summary.of([extra])
    figure.note = f"bare interpreter: {bare_kib / 1024:.1f} MiB"
    return figure


def bootstrap_size() -> Figure:
    from transport.bootstrap import build, build_payload, core_module_names, forget_built

    figure = Figure("bootstrap: payload + first stage", "bytes", True)
    boot = build()
    figure.results["transport"] = Summary.of([len(boot.payload) + len(boot.first_stage)])
    started = time.process_time()
    build_payload(core_module_names())
    cold_build = time.process_time() - started
    started = time.process_time()
    forget_built()
    build()
    cached = time.process_time() - started
    figure.note = (f"controller CPU to build: {cached * 1000:.1f} ms from the on-disk cache, "
                   f"{cold_build * 1000:.0f} ms without it (once per source change)")
    return figure
