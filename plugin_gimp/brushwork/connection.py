"""Reach the brushwork daemon from GIMP: quick liveness check, optional managed start.

Needs only the vendored ``client.py``/``managed_daemon.py``/``protocol.py`` and pyzmq, never
torch or numpy. A daemon the plug-in starts keeps running after the call (each GIMP procedure
call is a new plug-in process), so later calls find it warm; stop it with SIGTERM/Ctrl-C as
usual. With key files in the settings the daemon is a remote one, reached with CURVE
authentication (docs/security.md), and never started here.
"""

import os

import protocol
from client import Client
from managed_daemon import ManagedDaemon, find_executable, read_recorded_executable
from model_list import INSTALL_RECORD

PING_TIMEOUT_S = 3.0     # how long a dead daemon may keep the user waiting
LOG_NAME = "brushwork-daemon.log"
SETTINGS_PLACE = "Filters > brushwork > Settings"


def connect(settings, log_dir, waiting=None):
    """A Client whose daemon answered a ping, starting the managed daemon when allowed.

    ``waiting()`` is called while a managed daemon starts; the Client watches that daemon, so
    its exit ends a wait at once. Raises protocol.Unavailable with a message telling the user
    what to do when no daemon can be reached.
    """
    endpoint = settings["endpoint"] or protocol.default_endpoint()
    client = Client(endpoint, timeout=float(settings["timeout_s"]), server_key=settings.get("server_key"),
                    client_key=settings.get("client_key"))
    try:
        client.ping(timeout=PING_TIMEOUT_S)
    except protocol.Unavailable as exc:
        if settings.get("server_key") or settings.get("client_key"):
            raise protocol.Unavailable(f"{exc} ({SETTINGS_PLACE} holds the key files)") from None
        if not settings["manage_daemon"]:
            raise protocol.Unavailable(
                f"No brushwork daemon answers at {endpoint}. Start it with `brushwork serve`, or let the "
                f"plug-in start it ({SETTINGS_PLACE}).") from None
        program = find_executable(settings["daemon_path"], read_recorded_executable(INSTALL_RECORD), SETTINGS_PLACE)
        daemon = ManagedDaemon(program, endpoint, log_path=os.path.join(log_dir, LOG_NAME))
        daemon.ensure_ready(client, waiting=waiting)
    return client
