"""Reach the brushwork daemon from GIMP: quick liveness check, optional managed start.

Needs only the vendored ``client.py``/``protocol.py`` and pyzmq, never torch or numpy.
A daemon the plug-in starts keeps running after the call (each GIMP procedure call is a
new plug-in process), so later calls find it warm; stop it with SIGTERM/Ctrl-C as usual.
With key files in the settings the daemon is a remote one, reached with CURVE
authentication (docs/security.md), and never started here.
"""

import json
import os
import shutil
import subprocess
import time

import protocol
from client import Client

PING_TIMEOUT_S = 3.0     # how long a dead daemon may keep the user waiting
START_TIMEOUT_S = 120.0  # a managed daemon imports torch and loads its models first
INSTALL_RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "installed.json")
LOG_NAME = "brushwork-daemon.log"


def connect(settings, log_dir, waiting=None):
    """A Client whose daemon answered a ping, starting the managed daemon when allowed.

    ``waiting()`` is called while a managed daemon starts. Raises protocol.Unavailable
    with a message telling the user what to do when no daemon can be reached.
    """
    endpoint = settings["endpoint"] or protocol.default_endpoint()
    client = Client(endpoint, timeout=PING_TIMEOUT_S, server_key=settings.get("server_key"),
                    client_key=settings.get("client_key"))
    try:
        client.ping()
    except protocol.Unavailable as exc:
        if settings.get("server_key") or settings.get("client_key"):
            raise protocol.Unavailable(f"{exc} (Filters > brushwork > Settings holds the key files)") from None
        if not settings["manage_daemon"]:
            raise protocol.Unavailable(
                f"No brushwork daemon answers at {endpoint}. Start it with `brushwork serve`, or let the "
                "plug-in start it (Filters > brushwork > Settings).") from None
        process = _start_daemon(daemon_program(settings["daemon_path"]), endpoint, log_dir)
        _wait_until_up(client, process, log_dir, waiting)
    client.timeout = float(settings["timeout_s"])
    return client


def daemon_program(configured):
    """The ``brushwork`` program to start: the configured one, the installer's, or PATH's."""
    if configured:
        if not os.access(configured, os.X_OK):
            raise protocol.Unavailable(f"No brushwork daemon answers, and the daemon program {configured!r} is "
                                       "not an executable file: fix it in Filters > brushwork > Settings.")
        return configured
    try:
        with open(INSTALL_RECORD, encoding="utf-8") as f:
            recorded = json.load(f).get("brushwork_executable") or ""
    except (OSError, ValueError):
        recorded = ""
    found = recorded if recorded and os.access(recorded, os.X_OK) else shutil.which("brushwork")
    if not found:
        raise protocol.Unavailable("No brushwork daemon answers and the `brushwork` program was not found: set "
                                   "its path in Filters > brushwork > Settings, or start `brushwork serve` yourself.")
    return found


def _start_daemon(program, endpoint, log_dir):
    """Launch ``<program> serve --endpoint <endpoint>`` detached, its output in a log file."""
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, LOG_NAME), "ab") as log:
        return subprocess.Popen([program, "serve", "--endpoint", endpoint], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_until_up(client, process, log_dir, waiting):
    deadline = time.monotonic() + START_TIMEOUT_S
    log = os.path.join(log_dir, LOG_NAME)
    while True:
        if waiting is not None:
            waiting()
        try:
            client.ping()
            return
        except protocol.Unavailable:
            if process.poll() is not None:
                raise protocol.Unavailable(f"the brushwork daemon exited at start-up (code {process.returncode}); "
                                           f"see {log}") from None
            if time.monotonic() > deadline:
                raise protocol.Unavailable(f"the brushwork daemon did not answer at {client.endpoint} within "
                                           f"{START_TIMEOUT_S:g} s; see {log}") from None
