"""The link to the brushwork daemon: a Client, plus a local daemon the plug-in may start itself.

No Krita calls here. ``Connection.client()`` is called from the worker thread; it pings the
configured endpoint and, when nothing answers and ``manage_daemon`` is on, starts
``brushwork serve`` as a child process (a ``ManagedDaemon``, watched: a Client waiting on it
fails as soon as it exits) and waits for it to come up. With key files set
(``server_key``, ``client_key``) the daemon is a remote one, reached with CURVE
authentication (docs/security.md), and never started here.
"""

import os
import shutil

from .brushwork_client import protocol
from .brushwork_client.client import STARTUP_TIMEOUT_S, Client, ManagedDaemon


def find_executable(configured, recorded):
    """The ``brushwork`` executable: the setting, else the installer's record, else the one on PATH."""
    for candidate in (configured, recorded):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("brushwork")


class Connection:
    """Owns the Client and (when managed) the daemon process. Use from one thread at a time."""

    def __init__(self, settings, recorded_executable=None, log_path=None):
        self.settings = settings
        self.recorded_executable = recorded_executable
        self.log_path = log_path
        self.daemon = None   # the ManagedDaemon this plug-in started, if any
        self._client = None

    @property
    def endpoint(self):
        return self.settings.endpoint or protocol.default_endpoint()

    @property
    def uses_keys(self):
        return bool(self.settings.server_key or self.settings.client_key)

    def reconfigure(self, settings):
        """Take new settings; a changed endpoint, key file or timeout gives a fresh Client next time."""
        def link(s):
            return s.endpoint, s.server_key, s.client_key, s.timeout_s
        if link(settings) != link(self.settings):
            self._drop_client()
        self.settings = settings

    def client(self, status=None, should_cancel=None, start=True):
        """A Client whose daemon answers a ping, starting the managed daemon if needed (and ``start``)."""
        if self._client is None:
            self._client = Client(self.endpoint, timeout=self.settings.timeout_s,
                                  server_key=self.settings.server_key, client_key=self.settings.client_key)
        self._client.daemon = self.daemon if self.daemon is not None and self.daemon.running else None
        try:
            self._ping(self._client)
            return self._client
        except protocol.Unavailable:
            if not (start and self.settings.manage_daemon) or self.uses_keys:
                raise
        self._start_daemon(status, should_cancel)
        return self._client

    def _ping(self, client, timeout=2.0):
        saved, client.timeout = client.timeout, timeout
        try:
            client.ping()
        finally:
            client.timeout = saved

    def _start_daemon(self, status, should_cancel):
        if self.daemon is None or not self.daemon.running:
            executable = find_executable(self.settings.brushwork_executable, self.recorded_executable)
            if not executable:
                raise protocol.Unavailable("no brushwork daemon is running and the `brushwork` program was not "
                                           "found: set its path in the brushwork docker's settings, or start "
                                           "`brushwork serve` yourself")
            if status:
                status("starting the brushwork daemon…")
            self.daemon = ManagedDaemon(executable, self.endpoint, self.settings.daemon_args, self.log_path)
            self.daemon.start()
        self._client.daemon = self.daemon
        self.daemon.wait_until_ready(self._client, STARTUP_TIMEOUT_S, should_cancel)

    def daemon_exit_message(self):
        """Why the daemon this plug-in started is gone, or None (still running, or none started)."""
        return self.daemon.exit_message() if self.daemon is not None else None

    def stop_daemon(self):
        """Stop the daemon this plug-in started (if any); a daemon started by the user is left alone."""
        self._drop_client()
        daemon, self.daemon = self.daemon, None
        if daemon is not None:
            daemon.stop()

    def _drop_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None
