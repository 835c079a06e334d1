"""Pool workers exit with the process that started them, whatever the start method."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import descendants, running

POOLS = textwrap.dedent(
    """
    import multiprocessing, os, signal, time
    from concurrent.futures import ProcessPoolExecutor
    from doggan.processes import watch_parent

    if __name__ == "__main__":
        # Ctrl-C as a terminal delivers it, even when the tests run as a background job, whose processes
        # start with SIGINT ignored (this one would then sleep its 600 s through the signal)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        parent = os.getpid()
        spawned = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=watch_parent, initargs=(parent,))
        [f.result() for f in [spawned.submit(time.sleep, 1) for _ in range(2)]]
        forked = multiprocessing.get_context("fork").Pool(2, watch_parent, (parent,))
        print("started", flush=True)
        # short sleeps: the kernel may hand SIGINT to one of the pools' threads, and Python runs the handler
        # only when the main thread next runs, which one long sleep would delay by up to 600 s
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.1)
    """
)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_of_spawned_and_forked_pools_exit_when_their_parent_is_killed(tmp_path, how):
    script = tmp_path / "pools.py"
    script.write_text(POOLS)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    parent.stdout.readline()
    helpers = descendants(parent.pid)
    assert len(helpers) >= 5, "2 spawned workers, their resource tracker, 2 forked workers"
    parent.send_signal(how)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(map(running, helpers)):
        time.sleep(0.1)
    survivors = [pid for pid in helpers if running(pid)]
    for pid in survivors:  # leave nothing behind even when failing
        os.kill(pid, signal.SIGKILL)
    assert survivors == []
