"""tornado-start-all --processes N: workers share the port, a dead worker is restarted, PID files, start-up
failures, metrics of every worker, and the configuration refresher in each worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from faultkit import WORKER_READY, callCount, children, freePort, groupMembers, scrapeMetrics, waitUntil


def _call(server, pki, method: str = "pid", *args) -> dict:
    """One call on a new connection (the kernel picks the worker that accepts it)."""
    from TornadoServices.Core.Encoding import decode, encode

    response = requests.post(
        server.url(), data={"method": method, "args": encode(list(args))}, cert=pki.proxy, verify=pki.caFile, timeout=30
    )
    return decode(response.text)[0]


def _stopped(server, pidFile=None) -> None:
    """SIGTERM stops the whole server with status 0, leaving no process and no PID file behind."""
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.text
    assert "Stopped every worker has exited" in server.text or "Stopped served" in server.text
    waitUntil(lambda: not groupMembers(server.pid), "every process of the server to exit")
    if pidFile is not None:
        assert not pidFile.exists()


def test_workers_share_the_port_and_a_killed_worker_is_restarted(launch, faultpki, tmp_path):
    pidFile = tmp_path / "server.pid"
    server = launch(args=["--processes", "2", "--pid-file", str(pidFile)])
    workers = server.workerPids(2)
    assert int(pidFile.read_text()) == server.pid  # the supervisor: the process to signal
    assert sorted(children(server.pid)) == sorted(workers)
    served = {_call(server, faultpki)["Value"] for _ in range(12)}
    assert served <= set(workers)

    victim, survivor = workers
    os.kill(victim, signal.SIGKILL)
    server.waitFor(rf"Worker died \d \(pid {victim}\): killed by SIGKILL")
    # the survivor keeps serving while the victim is replaced
    for _ in range(5):
        result = _call(server, faultpki)
        assert result["OK"], result
    replacement = int(server.waitFor(WORKER_READY, count=3)[2].group(2))
    assert replacement not in workers
    assert sorted(children(server.pid)) == sorted([survivor, replacement])
    served = {_call(server, faultpki)["Value"] for _ in range(12)}
    assert served <= {survivor, replacement}
    _stopped(server, pidFile)


def test_metrics_add_up_over_workers_and_survive_a_worker_death(launch, faultpki):
    server = launch(args=["--processes", "2"])
    workers = server.workerPids(2)
    for _ in range(30):
        assert _call(server, faultpki)["OK"]
    # a scrape answers for every worker, whichever accepted it (other workers' counters are <= 1 s old)
    samples = waitUntil(
        lambda: (s := scrapeMetrics(server.port, faultpki)) and callCount(s, "pid") == 30 and s,
        "30 pid calls counted over both workers",
    )
    assert samples["tornadoservices_workers"] == 2
    assert samples['tornadoservices_threadpool_max_threads{service="Faults/Probe"}'] == 16  # 8 per worker
    os.kill(workers[0], signal.SIGKILL)
    server.waitFor(WORKER_READY, count=3)
    # the dead worker's calls are still counted: a counter never goes backwards
    for _ in range(5):
        samples = scrapeMetrics(server.port, faultpki)
        assert callCount(samples, "pid") == 30
    waitUntil(lambda: scrapeMetrics(server.port, faultpki)["tornadoservices_workers"] == 2, "the replacement in the metrics")
    _stopped(server)


def test_pid_file_refuses_a_running_process_and_replaces_a_stale_one(launch, tmp_path):
    pidFile = tmp_path / "busy.pid"
    pidFile.write_text(f"{os.getpid()}\n")  # this test process is certainly running
    refused = launch(args=["--pid-file", str(pidFile)], wait=False)
    assert refused.wait() == 1
    assert f"names process {os.getpid()}" in refused.text and "which is running" in refused.text
    assert pidFile.read_text() == f"{os.getpid()}\n"  # left alone

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pidFile.write_text(f"{dead.pid}\n")
    server = launch(args=["--pid-file", str(pidFile)])
    assert int(pidFile.read_text()) == server.pid
    _stopped(server, pidFile)


def test_a_worker_that_cannot_start_stops_the_server(launch):
    option = "/Systems/Framework/Services/Bookkeeping2/MaxKeys=0"  # its initializeHandler fails (in each worker)
    server = launch(args=["--processes", "2", "-o", option], wait=False)
    assert server.wait() == 1, server.text
    assert "Framework/Bookkeeping2: initializeHandler failed" in server.text
    assert "Worker failed to start" in server.text
    waitUntil(lambda: not groupMembers(server.pid), "every worker to exit")


@pytest.mark.parametrize("processes", [1, 2])
def test_each_worker_runs_the_configuration_refresher(launch, faultpki, processes):
    unreachable = f"https://127.0.0.1:{freePort()}/Configuration/Server"
    extra = f"DIRAC\n{{\n  Configuration\n  {{\n    Servers = {unreachable}\n    RefreshTime = 600\n  }}\n}}\n"
    server = launch(args=["--processes", str(processes)], extra=extra)
    expected = set(server.workerPids(processes)) if processes > 1 else {server.pid}
    seen: dict[int, dict] = {}

    def everyWorkerAnswered() -> bool:
        value = _call(server, faultpki, "refresherState")["Value"]
        seen[value["pid"]] = value
        return set(seen) == expected

    waitUntil(everyWorkerAnswered, f"an answer from each of {sorted(expected)}", interval=0)
    assert all(state["running"] for state in seen.values()), seen
    _stopped(server)


def test_workers_stop_when_the_supervisor_is_killed(launch, faultpki):
    server = launch(args=["--processes", "2"])
    workers = server.workerPids(2)
    server.signal(signal.SIGKILL)  # the supervisor only: its workers must not serve on alone
    server.wait()
    waitUntil(lambda: not [pid for pid in groupMembers(server.pid) if pid in workers], "the orphaned workers to stop")
    assert server.text.count("Stopping the supervisor process is gone") == 2
