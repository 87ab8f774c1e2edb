"""The link to the brushwork daemon: a Client, plus a local daemon the plug-in may start itself.

No Krita calls here. ``Connection.client()`` is called from the worker thread; it pings the
configured endpoint and, when nothing answers and ``manage_daemon`` is on, starts
``brushwork serve`` as a child process and waits for it to come up. With key files set
(``server_key``, ``client_key``) the daemon is a remote one, reached with CURVE
authentication (docs/security.md), and never started here.
"""

import os
import shutil
import subprocess
import time

from .brushwork_client import protocol
from .brushwork_client.client import Client

STARTUP_TIMEOUT_S = 60.0


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
        self.process = None
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
        if self.process is None or self.process.poll() is not None:
            executable = find_executable(self.settings.brushwork_executable, self.recorded_executable)
            if not executable:
                raise protocol.Unavailable("no brushwork daemon is running and the `brushwork` program was not "
                                           "found: set its path in the brushwork docker's settings, or start "
                                           "`brushwork serve` yourself")
            command = [executable, "serve", "--endpoint", self.endpoint, *self.settings.daemon_args]
            if status:
                status("starting the brushwork daemon…")
            log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
            try:
                self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise protocol.Unavailable(f"could not start {executable}: {exc}") from None
            finally:
                if log is not subprocess.DEVNULL:
                    log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if should_cancel and should_cancel():
                raise protocol.Cancelled("cancelled")
            if self.process.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise protocol.Unavailable(f"the brushwork daemon exited at start-up "
                                           f"(exit code {self.process.returncode}){where}")
            try:
                self._ping(self._client, timeout=0.5)
                return
            except protocol.Unavailable:
                continue
        raise protocol.Unavailable(f"the brushwork daemon did not answer within {STARTUP_TIMEOUT_S:g} s")

    def stop_daemon(self):
        """Stop the daemon this plug-in started (if any); a daemon started by the user is left alone."""
        self._drop_client()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _drop_client(self):
        if self._client is not None:
            self._client.close()
            self._client = None
