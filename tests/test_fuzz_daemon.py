"""Property-based fuzzing of a real daemon subprocess with malformed, truncated, oversized and random
requests (see tests/daemon_fuzz.py for the messages and the checks on every reply).

The default run sends 1,500 messages; ``-m slow`` sends 10,000 (benchmarks/fuzz_daemon.py prints
the same figures for any count). The model-folder fuzzer (tests/model_folder_fuzz.py) drops 300
hostile files into a folder the daemon watches while clients work; ``-m slow`` drops 2,000
(benchmarks/fuzz_model_folder.py prints its figures, ping round trips included).
"""

import time

import pytest
from hypothesis import HealthCheck, given, settings

from backend import protocol
from backend.client import Client
from daemon_fuzz import FUZZ_DAEMON_ARGS, Fuzzer, messages, rss_kib
from daemon_process import daemon_output, start_daemon, stop_daemon
from helpers import make_model
from model_folder_fuzz import FolderFuzzer, Traffic, ping_percentiles

RSS_GROWTH_LIMIT_KIB = 64 * 1024


@pytest.fixture(scope="module")
def daemon(models_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    endpoint = f"ipc://{tmp}/fuzz.sock"
    proc = start_daemon(tmp, endpoint, models_dir, *FUZZ_DAEMON_ARGS)
    proc.endpoint = endpoint
    yield proc
    assert stop_daemon(proc) == 0, daemon_output(proc)


def fuzz(daemon, count):
    """Send ``count`` fuzzed messages; return (fuzzer, RSS KiB after a warm-up, RSS KiB at the end)."""
    fuzzer = Fuzzer(daemon.endpoint)
    warm_up = min(1000, count // 3)
    rss = {}

    @settings(max_examples=count, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(message=messages)
    def send(message):
        assert daemon.poll() is None, f"the daemon died:\n{daemon_output(daemon)[-3000:]}"
        fuzzer.send(message)
        if fuzzer.sent == warm_up:
            rss["before"] = rss_kib(daemon.pid)

    try:
        send()
    finally:
        fuzzer.close()
    return fuzzer, rss["before"], rss_kib(daemon.pid)


def check_outcome(daemon, fuzzer, count, rss_before, rss_after):
    print(f"\nfuzz: {fuzzer.sent} messages on {fuzzer.connections} connections; daemon RSS "
          f"{rss_before / 1024:.1f} MiB after warm-up, {rss_after / 1024:.1f} MiB at the end; "
          f"replies {dict(fuzzer.replies)}")
    assert fuzzer.sent >= count
    assert fuzzer.replies["bad_request"] and fuzzer.replies["too_large"] and fuzzer.replies["bad_pixels"]
    assert fuzzer.replies["result"] and fuzzer.replies["pong"], "some fuzzed requests must be valid"
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB
    with Client(daemon.endpoint, timeout=20) as client:   # still serving real work
        assert client.ping() > 0
        data = bytes(range(256)) * 3
        assert bytes(client.stylize(data, 16, 12, {"dtype": "u8", "channels": "RGBA"}, "mosaic",
                                    strength=0.0).pixels) == data
    assert "Traceback" not in daemon_output(daemon)


@pytest.mark.parametrize("count", [pytest.param(1500, id="1500"),
                                   pytest.param(10_000, id="10000", marks=pytest.mark.slow)])
def test_fuzzed_requests_get_error_replies_and_the_daemon_stays_up(daemon, count):
    fuzzer, rss_before, rss_after = fuzz(daemon, count)
    check_outcome(daemon, fuzzer, count, rss_before, rss_after)


@pytest.mark.parametrize("frame, words", [(b"[" * 20000 + b"]" * 20000, "nests"),
                                          (b'{"id": "\\ud800", "kind": "ping"}', "surrogate")])
def test_headers_that_broke_the_daemon_are_bad_requests(frame, words):
    """Found by the fuzzer: a RecursionError, and an id that could not be encoded in the reply."""
    with pytest.raises(protocol.BadRequest, match=words):
        protocol.decode_header(frame)


@pytest.mark.parametrize("count", [pytest.param(300, id="300"),
                                   pytest.param(2000, id="2000", marks=pytest.mark.slow)])
def test_hostile_files_in_a_watched_model_folder_never_stop_the_daemon(tmp_path, count):
    """Each hostile file is one problem: pings are answered throughout, the bundled models keep
    working, no reply is ``internal`` and memory stays bounded (issue 19)."""
    watched, template = tmp_path / "watched", tmp_path / "template"
    watched.mkdir()
    template_json = make_model(template, "template", architecture={"channels": 4, "blocks": 1})
    endpoint = f"ipc://{tmp_path}/folder.sock"
    daemon = start_daemon(tmp_path, endpoint, watched)
    fuzzer = FolderFuzzer(watched, template_json, seed=count)
    try:
        with Traffic(endpoint, style="wave", sr="sr_x2_pixel") as traffic:
            while fuzzer.written < count and not traffic.failures and daemon.poll() is None:
                fuzzer.drop()
                if fuzzer.written == count // 10:
                    rss_before = rss_kib(daemon.pid)
                time.sleep(0.005)
            time.sleep(1.0)   # a last round of requests sees the final folder
        rss_after = rss_kib(daemon.pid)
        assert daemon.poll() is None, daemon_output(daemon)[-3000:]
        assert not traffic.failures, traffic.failures
        median, p99, worst = ping_percentiles(traffic.ping_seconds)
        print(f"\nfolder fuzz: {fuzzer.written} files {dict(fuzzer.kinds)}; requests {dict(traffic.requests)}; "
              f"{len(traffic.ping_seconds)} pings, median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
              f"max {worst * 1000:.1f} ms; RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB")
        assert fuzzer.written >= count and traffic.requests["upscale"] >= 3
        assert rss_after - rss_before < 2 * RSS_GROWTH_LIMIT_KIB
        with Client(endpoint, timeout=20) as client:
            info = client.info()
        assert any(m["name"].startswith("f0") for m in info["models"]), "no dropped valid model was served"
        assert len(info["problems"]) > 10
        assert "Traceback" not in daemon_output(daemon)
    finally:
        assert stop_daemon(daemon) == 0, daemon_output(daemon)[-3000:]
