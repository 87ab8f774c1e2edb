"""The daemon's job queue: bounded, and fair across clients (round-robin by ZeroMQ identity).

The loop thread puts jobs in and cancels or drops them; the one worker thread takes them out.
"""

import collections
import threading

from backend import protocol


class Job:
    """One queued image job: who asked, what, and a flag the worker polls per tile."""

    def __init__(self, identity, header, frames):
        self.identity = identity
        self.id = header["id"]
        self.kind = header["kind"]
        self.header = header
        self.frames = frames
        self.cancelled = threading.Event()
        self.done = 0
        self.total = 0


class FairQueue:
    """Bounded job queue served round-robin across client identities. Thread-safe.

    Clients take turns, one job each, in the order they first queued; a client that was just
    served never goes next while another client waits.
    """

    def __init__(self, limit):
        self.limit = limit
        self._by_client = collections.OrderedDict()  # identity -> deque of jobs, in serving order
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()
        self.running = None  # the job the worker is on
        self._last_served = None

    def put(self, job):
        """Queue ``job``; return how many jobs are ahead of it (the running one included). Raises Busy when full."""
        with self._cond:
            if self._size >= self.limit:
                raise protocol.Busy(f"the daemon's queue is full ({self.limit} jobs waiting); try again later")
            self._by_client.setdefault(job.identity, collections.deque()).append(job)
            self._size += 1
            self._cond.notify()
            return self._serving_order().index(job) + (self.running is not None)

    @staticmethod
    def _pop_next(by_client, last_served):
        """Remove and return (identity, job) of the job to serve next from ``by_client``."""
        if next(iter(by_client)) == last_served and len(by_client) > 1:
            by_client.move_to_end(last_served)
        identity, jobs = next(iter(by_client.items()))
        job = jobs.popleft()
        del by_client[identity]
        if jobs:  # this client goes to the back of the line
            by_client[identity] = jobs
        return identity, job

    def _serving_order(self):
        """The queued jobs in the order the worker will take them if no others arrive (lock held)."""
        by_client = collections.OrderedDict((k, collections.deque(v)) for k, v in self._by_client.items())
        last, order = self._last_served, []
        while by_client:
            last, job = self._pop_next(by_client, last)
            order.append(job)
        return order

    def take(self):
        """Block until a job is available (then mark it running) or the queue is closed (None)."""
        with self._cond:
            while not self._size and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._last_served, job = self._pop_next(self._by_client, self._last_served)
            self._size -= 1
            self.running = job
            return job

    def finish(self, job):
        """Mark ``job`` as no longer running (the worker is done with it)."""
        with self._cond:
            if self.running is job:
                self.running = None

    def remove(self, identity, job_id):
        """Take a queued (not yet running) job out; return it or None."""
        with self._cond:
            jobs = self._by_client.get(identity, ())
            for job in jobs:
                if job.id == job_id:
                    jobs.remove(job)
                    if not jobs:
                        del self._by_client[identity]
                    self._size -= 1
                    return job
            return None

    def remove_client(self, identity):
        """Take all of ``identity``'s queued jobs out; return them (a list, maybe empty)."""
        with self._cond:
            jobs = list(self._by_client.pop(identity, ()))
            self._size -= len(jobs)
            return jobs

    def snapshot(self):
        """(running job or None, queued jobs in the order they will run)."""
        with self._cond:
            return self.running, self._serving_order()

    def close(self):
        """Stop the worker after its current job; return the jobs that were still waiting."""
        with self._cond:
            self._closed = True
            waiting = [job for jobs in self._by_client.values() for job in jobs]
            self._by_client.clear()
            self._size = 0
            self._cond.notify_all()
            return waiting


def waiting_message(ahead):
    """The progress message of a queued job with ``ahead`` jobs (the running one included) before it."""
    return f"waiting, {ahead} job{'' if ahead == 1 else 's'} ahead"
