"""The daemon's compute worker: one thread that runs the queued image jobs one at a time.

The GPU (or CPU) is one resource, so jobs run one after another. ZeroMQ sockets must not be
shared between threads: the worker hands its replies (progress, result or error) to the loop
over an inproc PUSH socket, and the loop sends them to the client that asked.
"""

import ctypes
import ctypes.util
import logging
import time

import zmq

from backend import protocol
from backend.daemon.jobs import run_queued_job
from backend.protocol import BrushworkError

log = logging.getLogger("brushwork.daemon")


def _malloc_trim():
    """glibc's ``malloc_trim``, or a no-op where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda pad: 0


# Hands the C heap's free memory back to the system after each job. Without it glibc keeps
# what a large image (or many image sizes) needed, and the daemon's resident memory stays at
# its high-water mark (measured with benchmarks/fuzz_daemon.py and tests/test_fuzz_daemon.py).
_return_free_memory = _malloc_trim()


def work(engine, queue, context, reply_endpoint):
    """The worker thread: run the jobs ``queue`` hands out until it is closed, sending each job's
    replies to ``reply_endpoint`` as ``[identity, header, frames...]``."""
    replies = context.socket(zmq.PUSH)
    replies.connect(reply_endpoint)
    try:
        while True:
            job = queue.take()
            if job is None:
                return
            try:
                _run(engine, job, replies)
            finally:
                queue.finish(job)
                _return_free_memory(0)
    finally:
        replies.close(linger=-1)


def _run(engine, job, replies):
    """Run one job; its progress, then its result or error, go to ``replies``."""
    def send(header, frames=()):
        header = dict(header, id=job.id)
        replies.send_multipart([job.identity, protocol.encode_header(header), *frames], copy=False)

    def send_error(error):
        send({"kind": "error", "code": error.code, "message": error.message})

    def progress(done, total):
        job.done, job.total = int(done), int(total)
        send({"kind": "progress", "done": job.done, "total": job.total})

    def is_cancelled():
        return job.cancelled.is_set()

    started = time.monotonic()
    try:
        if job.cancelled.is_set():
            raise protocol.Cancelled("cancelled")
        header, frames = run_queued_job(engine, job, progress, is_cancelled)
        send(header, frames)
        log.info("%s %s done in %.2f s", job.kind, job.id, time.monotonic() - started)
    except BrushworkError as exc:
        log.info("%s %s failed at step %d of %d: %s: %s", job.kind, job.id, job.done, job.total, exc.code,
                 exc.message)
        send_error(exc)
    except MemoryError:
        log.warning("%s %s ran out of memory", job.kind, job.id)
        send_error(protocol.OutOfMemory("the daemon ran out of memory for this image; try a smaller one or close "
                                        "other programs"))
    except Exception:
        log.exception("internal error in %s job %s", job.kind, job.id)
        send_error(protocol.InternalError())
    finally:
        job.frames = None  # release the request's buffers
