"""What a training run tells the person (or the daemon) waiting for it: a progress bar,
``--progress-json`` lines, the time the run will take once it is measured, and ``stop``
requests read from stdin."""

import functools
import json
import os
import sys
import threading
import time

from tqdm import tqdm

from backend.protocol import describe_duration


class ReaderGone(KeyboardInterrupt):
    """The process reading the ``--progress-json`` lines (the daemon) went away: the run stops as if
    interrupted, with a checkpoint, so that it can be resumed."""


class SpeedMeter:
    """Seconds per iteration on this device, timed over the steps after the first (which
    allocates memory and warms caches up): ready after ESTIMATE_STEPS steps and ESTIMATE_S seconds."""

    ESTIMATE_STEPS = 3
    ESTIMATE_S = 1.0

    def __init__(self):
        self.first_done = None
        self.steps = 0
        self.s_per_iteration = None

    def step_done(self, now):
        """Record a finished step; True when this one made the estimate ready."""
        if self.first_done is None:
            self.first_done = now
            return False
        self.steps += 1
        elapsed = now - self.first_done
        if self.s_per_iteration is None and self.steps >= self.ESTIMATE_STEPS and elapsed >= self.ESTIMATE_S:
            self.s_per_iteration = elapsed / self.steps
            return True
        return False


def estimate_text(s_per_iteration, iterations, done, hardware, time_limit=None):
    """What a run of ``iterations`` costs here, and how to stop it sooner, for the person waiting."""
    remaining = (iterations - done) * s_per_iteration
    text = (f"measured on {hardware}: {s_per_iteration:.3g} s per iteration, so {iterations:,} iterations take "
            f"about {describe_duration(iterations * s_per_iteration)}")
    if done:
        text += f" ({describe_duration(remaining)} from iteration {done:,})"
    if time_limit and time_limit < remaining:
        return text + (f"; --time-limit stops it after {describe_duration(time_limit)}, at about "
                       f"{done + int(time_limit / s_per_iteration):,} iterations, and saves the model")
    if remaining > 3600:
        text += (f". To stop sooner and keep what it has learnt, add --time-limit SECONDS (--time-limit 3600: "
                 f"about {int(3600 / s_per_iteration):,} iterations in an hour)")
    return text


class Progress:
    """tqdm bar on stderr (rank 0) plus, with ``json_lines``, JSON progress lines on stdout; once
    the speed is measured, the estimated time on stderr (and as an ``estimate`` JSON line)."""

    def __init__(self, total, start, enabled, json_lines, hardware, time_limit=None):
        self.total, self.start, self.json_lines, self.enabled = total, start, json_lines and enabled, enabled
        self.hardware, self.time_limit = hardware, time_limit
        self.bar = tqdm(total=total, initial=start, disable=not enabled, unit="it", dynamic_ncols=True)
        self.started = time.monotonic()
        self.last_json = 0.0
        self.reader_gone = False
        self.speed = SpeedMeter()

    def update(self, iteration, parts):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()}, refresh=False)
        self.bar.update(1)
        now = time.monotonic()
        if self.speed.step_done(now):
            self.announce_estimate()
        if self.json_lines and (now - self.last_json >= 0.5 or iteration == self.total):
            rate = (iteration - self.start) / max(now - self.started, 1e-9)
            self.emit(event="progress", iteration=iteration, total=self.total, losses=parts,
                      s_per_iteration=1 / rate if rate else None,
                      eta_s=(self.total - iteration) / rate if rate else None)
            self.last_json = now

    def announce_estimate(self):
        s = self.speed.s_per_iteration
        self.say(estimate_text(s, self.total, self.start, self.hardware, self.time_limit))
        self.emit(event="estimate", s_per_iteration=s, iterations=self.total, start=self.start,
                  seconds=(self.total - self.start) * s, hardware=self.hardware)

    def say(self, text):
        """A line for the person at the terminal (stderr, above the bar)."""
        if self.enabled:
            self.bar.write(text, file=sys.stderr)

    def emit(self, **fields):
        if self.json_lines and not emit_json(fields):
            self.json_lines, self.reader_gone = False, True

    def close(self):
        self.bar.close()


def emit_json(fields):
    """Print ``fields`` as one JSON line on stdout; False when its reader went away (stdout is then
    sent to /dev/null, so that what is still buffered does not fail at exit)."""
    try:
        print(json.dumps(fields), flush=True)
        return True
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False


@functools.cache
def stop_requests(stream):
    """An Event set when ``stream`` (the trainer's stdin under ``--progress-json``) gives the line
    ``stop``: how an editor's training is stopped early, keeping what it has learnt. One per
    stream: the runs of a recipe's parts share it, so a ``stop`` ends the part that is running."""
    requested = threading.Event()

    def watch():
        try:
            for line in stream:
                if line.strip() == "stop":
                    requested.set()
                    return
        except (OSError, ValueError):   # no usable stdin (closed, or captured by a test runner)
            return
    if stream is not None:
        threading.Thread(target=watch, name="brushwork-stop-requests", daemon=True).start()
    return requested
