"""Load: 4 concurrent clients x 250 requests, several in flight each, against one daemon whose
queue holds only 2 jobs: nothing lost, duplicated or mismatched, and the ``busy`` path taken
(see tests/daemon_load.py; benchmarks/load_daemon.py prints the latencies)."""

import pytest

from daemon_load import run_load, summary
from daemon_process import daemon_output, start_daemon, stop_daemon


@pytest.fixture(scope="module")
def daemon(models_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    endpoint = f"ipc://{tmp}/load.sock"
    proc = start_daemon(tmp, endpoint, models_dir, "--queue", "2")
    proc.endpoint = endpoint
    yield proc
    assert stop_daemon(proc) == 0, daemon_output(proc)


def test_four_clients_250_requests_each_nothing_lost_duplicated_or_mismatched(daemon):
    loads, wall = run_load(daemon.endpoint, clients=4, requests=250, window=4)
    totals = summary(loads, wall)
    print(f"\nload: {totals}")
    assert totals["errors"] == []
    assert (totals["lost"], totals["duplicated"], totals["mismatched"]) == (0, 0, 0)
    assert totals["done"] == 1000 and all(load.done == 250 for load in loads)
    assert totals["busy"] > 0, "a 2-job queue with 16 requests in flight must refuse some"
    assert daemon.poll() is None
