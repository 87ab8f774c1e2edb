"""Where the daemon may listen: ``--tcp`` parsing, and which endpoints need keys (docs/security.md)."""

import pytest

from backend import protocol
from backend.daemon.endpoints import check_endpoint, tcp_endpoint
from backend.daemon.server import Daemon


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5599", "tcp://192.0.2.1:5557", "tcp://*:5599",
                                      "tcp://example.com:5599", "tcp://[::]:5599", "udp://127.0.0.1:5"])
def test_only_ipc_and_loopback_tcp_endpoints_are_allowed(endpoint):
    with pytest.raises(protocol.BrushworkError):
        check_endpoint(endpoint)


@pytest.mark.parametrize("spec, endpoint", [("", "tcp://127.0.0.1:5557"), ("6000", "tcp://127.0.0.1:6000"),
                                            ("localhost:6001", "tcp://127.0.0.1:6001"),
                                            ("[::1]:6002", "tcp://[::1]:6002"), ("0.0.0.0", "tcp://0.0.0.0:5557")])
def test_tcp_option_parsing(spec, endpoint):
    assert tcp_endpoint(spec) == endpoint
    if "0.0.0.0" not in endpoint:
        check_endpoint(endpoint)


def test_daemon_refuses_a_non_loopback_endpoint_without_auth():
    check_endpoint("tcp://127.0.0.1:5557")
    check_endpoint("tcp://[::1]:5557")
    for endpoint in ("tcp://0.0.0.0:5557", "tcp://*:5557", "tcp://192.168.1.10:5557", "tcp://studio.local:5557"):
        with pytest.raises(protocol.BrushworkError, match="without authentication"):
            check_endpoint(endpoint)
        check_endpoint(endpoint, authenticated=True)
    with pytest.raises(protocol.BrushworkError, match="without authentication"):
        Daemon(engine=None, store=None, endpoint="tcp://0.0.0.0:5557")
