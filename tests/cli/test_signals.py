"""SIGINT and SIGTERM stop a command within seconds, even inside a native call that never returns."""

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

READY = "print('ready', flush=True)"


def start(script: str, *argv) -> subprocess.Popen:
    """``script`` in a child whose SIGINT is the default one: a test run started in the background of a
    non-interactive shell inherits SIGINT ignored, and losslens rightly keeps an ignored signal ignored."""
    script = f"import signal\nsignal.signal(signal.SIGINT, signal.SIG_DFL)\n{script}"
    return subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def stop(proc: subprocess.Popen, signum: int, after: float) -> tuple[str, float]:
    """Send ``signum`` ``after`` seconds past ``ready``; the process's stderr and the seconds it took to end."""
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(after)
        proc.send_signal(signum)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=60)
        return err, time.monotonic() - sent
    finally:
        proc.kill()


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_watchdog_ends_a_native_call_that_never_returns(signum, status):
    """The main thread sits in one long C call that releases the GIL (libc's ``sleep`` through ctypes; the
    signals blocked in that thread, so the call is not cut short and Python's handler never runs there): the
    watchdog, woken through the wakeup descriptor, ends the process after its grace period with the signal's
    status (as when gudhi's hera, which losslens no longer calls, looped forever on diagrams of unequal counts)."""
    script = ("import ctypes, signal\nfrom losslens.cli._signals import stop_on_signals\n"
              f"with stop_on_signals():\n    signal.pthread_sigmask(signal.SIG_BLOCK, {{{signum}}})\n    {READY}\n"
              "    ctypes.CDLL(None).sleep(1000)")
    proc = start(script)
    err, elapsed = stop(proc, signum, after=0.3)
    assert proc.returncode == status and elapsed < 5, (proc.returncode, elapsed, err)
    assert "what was computed is saved: rerun the command to resume (stopped inside a native call)" in err


def test_ctrl_c_stops_compare_surfaces(tmp_path):
    """SIGINT while compare-surfaces works on two noise surfaces (~1,600 basins each: topology, then seconds
    inside scipy's assignment): one line, status 130, no traceback. (Before: hera never returned, and no
    signal but SIGKILL stopped it.)"""
    rng = np.random.default_rng(0)
    x = np.linspace(-1.0, 1.0, 90)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"noise{i}.h5")
        with h5py.File(paths[-1], "w") as f:  # the reference tool's layout
            f["xcoordinates"], f["ycoordinates"], f["train_loss"] = x, x, rng.random((90, 90))
    script = f"import sys\nfrom losslens.cli.main import main\n{READY}\nsys.exit(main(sys.argv[1:]))"
    proc = start(script, "compare-surfaces", *map(str, paths), "--out", str(tmp_path / "o"))
    err, elapsed = stop(proc, signal.SIGINT, after=1.5)
    if proc.returncode == 0:
        pytest.skip("the comparison finished before the signal arrived")
    # the bound includes the interpreter's own exit (seconds with torch loaded on a busy machine)
    assert proc.returncode == 130 and elapsed < 10, (proc.returncode, elapsed, err)
    assert err.strip().startswith("losslens: interrupted; what was computed is saved: rerun the command to resume")
    assert "Traceback" not in err


def test_a_signal_ignored_by_the_caller_stays_ignored():
    """nohup, or a background job of a script, starts us with SIGINT ignored: losslens keeps it so."""
    script = ("import os, signal, sys\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
              "from losslens.cli._signals import stop_on_signals\n"
              "with stop_on_signals():\n    os.kill(os.getpid(), signal.SIGINT)\n    print('still here')\n"
              "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "still here\n", done.stderr


def test_importing_the_command_imports_neither_torch_nor_the_analyses():
    """The command's entry (``losslens.cli.main:main``) installs its signal handlers before anything heavy is
    imported (the package face imports on first use): a Ctrl-C in the seconds of importing torch, scipy, ...
    gets the one-line stop, not a traceback from inside an import."""
    script = "import sys\nimport losslens.cli.main\nprint(sorted(m for m in ('torch', 'losslens.core') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
