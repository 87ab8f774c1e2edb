"""The link to the brushwork daemon: a Client, plus a local daemon the plug-in may start itself.

No Krita calls here: the mechanics (finding the program, starting and watching ``brushwork
serve``, pinging until it answers) are the vendored client's ``managed_daemon``; this module
holds the plug-in's policy. ``Connection.client()`` is called from the worker thread; it pings
the configured endpoint and, when nothing answers and ``manage_daemon`` is on, starts the
daemon (a Client waiting on it then fails as soon as it exits), and stops it when Krita quits.
With key files set (``server_key``, ``client_key``) the daemon is a remote one, reached with
CURVE authentication (docs/security.md), and never started here.
"""

from .brushwork_client import protocol
from .brushwork_client.client import Client
from .brushwork_client.managed_daemon import ManagedDaemon, find_executable

PING_TIMEOUT_S = 2.0   # how long a daemon that is not there may delay a job before one is started
SETTINGS_PLACE = "the brushwork docker's settings (⚙)"


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
            self._client.ping(timeout=PING_TIMEOUT_S)
            return self._client
        except protocol.Unavailable:
            if not (start and self.settings.manage_daemon) or self.uses_keys:
                raise
        if self.daemon is None or not self.daemon.running:
            program = find_executable(self.settings.brushwork_executable, self.recorded_executable, SETTINGS_PLACE)
            self.daemon = ManagedDaemon(program, self.endpoint, self.settings.daemon_args, self.log_path)
            if status:
                status("starting the brushwork daemon…")
        self.daemon.ensure_ready(self._client, should_cancel=should_cancel)
        return self._client

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
