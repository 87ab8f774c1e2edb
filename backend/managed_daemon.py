"""A ``brushwork serve`` process an editor plug-in starts and watches itself, and the program to start.

Needs only the standard library and ``protocol.py``: both installers vendor this file next to
``client.py`` (Krita: the ``brushwork_client`` package; GIMP: top-level modules), so it runs in
the editors' own Pythons.

    try:
        client.ping(timeout=2.0)                       # a daemon already answers: use it
    except protocol.Unavailable:
        program = find_executable(configured, read_recorded_executable("install.json"), "the settings")
        daemon = ManagedDaemon(program, client.endpoint, log_path="daemon.log")
        daemon.ensure_ready(client)                    # start, watch, ping until it answers

Once ``client.daemon`` is the ManagedDaemon (``ensure_ready`` sets it), a client waiting for a
reply gives up within ``client.POLL_INTERVAL_S`` of the daemon's exit, naming its exit code and log.
"""

import json
import os
import shutil
import subprocess
import time

try:
    from . import protocol
except ImportError:  # vendored next to protocol.py as top-level modules
    import protocol

STARTUP_TIMEOUT_S = 120.0  # a starting daemon imports torch and loads its models; an exit ends the wait at once
READY_PING_S = 0.5         # how long each ping waits while a daemon starts


def read_recorded_executable(record_path):
    """The ``brushwork_executable`` an installer recorded in the JSON file ``record_path``, or None."""
    try:
        with open(record_path, encoding="utf-8") as f:
            recorded = json.load(f).get("brushwork_executable")
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) and recorded else None


def _is_executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_executable(configured, recorded=None, settings_place="the plug-in's settings"):
    """The ``brushwork`` program to start: ``configured`` (the user's setting), else ``recorded``
    (the installer's), else the one on PATH. Raises Unavailable, telling the user what to change
    in ``settings_place``, when the configured one is not an executable file or none is found."""
    if configured:
        if not _is_executable(configured):
            raise protocol.Unavailable(f"no brushwork daemon answers, and the brushwork program {configured!r} "
                                       f"is not an executable file: fix it in {settings_place}")
        return configured
    if recorded and _is_executable(recorded):
        return recorded
    found = shutil.which("brushwork")
    if not found:
        raise protocol.Unavailable("no brushwork daemon answers and the `brushwork` program was not found: set "
                                   f"its path in {settings_place}, or start `brushwork serve` yourself")
    return found


class ManagedDaemon:
    """A ``brushwork serve`` child process an editor plug-in started itself, and watches.

    Not thread-safe, but :meth:`exit_message` and :meth:`check` may be called from any thread.
    ``log_path`` receives the daemon's output (appended; its folder is made if needed);
    ``args`` are extra ``serve`` arguments. The process runs in its own session, so it
    outlives a plug-in process that exits without calling :meth:`stop` (GIMP's).
    """

    def __init__(self, program, endpoint, args=(), log_path=None):
        self.program = program
        self.endpoint = endpoint
        self.args = list(args)
        self.log_path = log_path
        self.process = None

    @property
    def running(self):
        """True while the process started by :meth:`start` has not exited."""
        return self.process is not None and self.process.poll() is None

    def start(self):
        """Start ``program serve --endpoint ENDPOINT ARGS``; Unavailable if it cannot be started."""
        command = [self.program, "serve", "--endpoint", self.endpoint, *self.args]
        try:
            if self.log_path:
                os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
            log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        except OSError as exc:
            raise protocol.Unavailable(f"could not open the daemon's log {self.log_path}: {exc}") from None
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise protocol.Unavailable(f"could not start {self.program}: {exc}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def exit_message(self):
        """Why the daemon is gone (exit code, log file), or None while it runs or before it started."""
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        where = f"; see {self.log_path}" if self.log_path else ""
        return f"the brushwork daemon this plug-in started {how}{where}"

    def check(self):
        """Raise Unavailable if the daemon has exited."""
        message = self.exit_message()
        if message:
            raise protocol.Unavailable(message)

    def ensure_ready(self, client, timeout=STARTUP_TIMEOUT_S, should_cancel=None, waiting=None):
        """Start the daemon unless it runs, make ``client`` watch it (its ``daemon``), and ping
        through ``client`` until it answers (see :meth:`wait_until_ready`)."""
        if not self.running:
            self.start()
        client.daemon = self
        self.wait_until_ready(client, timeout, should_cancel, waiting)

    def wait_until_ready(self, client, timeout=STARTUP_TIMEOUT_S, should_cancel=None, waiting=None):
        """Ping through ``client`` until the daemon answers; Unavailable if it exits or stays silent
        for ``timeout`` s, Cancelled once ``should_cancel()`` is true. ``waiting()`` is called
        before each ping (e.g. to pulse a progress bar)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if should_cancel is not None and should_cancel():
                raise protocol.Cancelled("cancelled")
            if waiting is not None:
                waiting()
            self.check()
            try:
                client.ping(timeout=READY_PING_S)
                return
            except protocol.Unavailable:
                continue
        self.check()
        where = f"; see {self.log_path}" if self.log_path else ""
        raise protocol.Unavailable(f"the brushwork daemon did not answer at {self.endpoint} within "
                                   f"{timeout:g} s{where}")

    def stop(self, grace_s=5.0):
        """Terminate the daemon (kill it after ``grace_s`` seconds); nothing if it is not running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
