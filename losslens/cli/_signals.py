"""SIGINT (Ctrl-C) and SIGTERM (what SLURM and torchrun send) stop a command within a second or two.

Python runs a signal's handler in the main thread between two bytecodes. The handler here raises
(``KeyboardInterrupt`` for SIGINT, ``Terminated`` for SIGTERM), so while the main thread runs Python the
command stops at once with every ``finally`` run: files are flushed and closed, and a grid, written chunk
by chunk, resumes when the command runs again.

That handler cannot run while the main thread is inside one long call into a native library (gudhi's
persistence, scipy's assignment, a large torch kernel): the signal would wait for the call to return,
possibly for hours. The safety net: Python's C-level handler writes the signal's number to the wakeup file
descriptor (``signal.set_wakeup_fd``) at once, without the GIL; a watchdog thread blocks reading it and,
woken, gives the main thread ``GRACE_SECONDS`` to run the handler. If it has not, the watchdog prints the
one-line message and ends the process with ``os._exit(128 + signum)`` (130, 143). Why this design:

- a timer (``faulthandler.dump_traceback_later``) fires on time, not on a signal;
- the watchdog is a Python thread, so it needs the GIL: it gets it because the long native calls losslens
  makes release it (measured: gudhi's cubical complex and bottleneck distance,
  ``scipy.optimize.linear_sum_assignment``, torch's kernels; ARPACK's ``eigsh`` (a Hessian-vector product
  in Python per step), scikit-learn's t-SNE (a Python loop over gradient steps, on a trajectory's few
  points) and ``torch.compile`` return to Python often, so the handler itself runs). A native call that
  held the GIL would block the watchdog too; such calls are kept short by bounding their inputs instead
  (PyWavelets: linear in the grid's size; the exact Wasserstein matching: ``diagram_distances.MATCHING_POINTS``);
- the process is cut only when the main thread is stuck in a native call, never while it runs Python, and
  h5py keeps the GIL during its calls, so no result file is cut in the middle of a write: what was written
  chunk by chunk before stays resumable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

GRACE_SECONDS = 1.5  # how long the main thread has to run the handler before the process is ended
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every ``finally`` runs as for Ctrl-C."""


def stop_message(signum: int, then: str = "what was computed is saved: rerun the command to resume") -> str:
    """The one line printed when a signal stops a command; ``then`` says what the user can do next."""
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    return f"losslens: {what}; {then}"


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGINT raises ``KeyboardInterrupt`` and SIGTERM ``Terminated`` in the main thread,
    and the watchdog ends the process if the main thread does not respond within ``GRACE_SECONDS``.
    A signal that is ignored stays ignored; outside the main thread (where signals cannot be handled)
    it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = threading.Event()

    def on_signal(signum, frame):
        handled.set()
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    # a signal ignored by whoever started us (nohup, a background job of a script) stays ignored
    previous = {s: signal.signal(s, on_signal) for s in EXIT_STATUS if signal.getsignal(s) is not signal.SIG_IGN}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watchdog = threading.Thread(target=_watch, args=(read_fd, handled), name="losslens-signal-watchdog",
                                daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: installed outside Python
        os.close(write_fd)  # the watchdog reads the end of the file and returns
        watchdog.join()
        os.close(read_fd)


def _watch(read_fd: int, handled: threading.Event) -> None:
    while data := os.read(read_fd, 64):
        for signum in data:
            if signum in EXIT_STATUS and not handled.wait(GRACE_SECONDS):
                os.write(2, (stop_message(signum) + " (stopped inside a native call)\n").encode())
                os._exit(EXIT_STATUS[signum])
