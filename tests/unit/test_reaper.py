"""The reaper with plain processes: the driver-JVM mode ends a child left by a SIGKILLed owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from ftbridge.cluster.reaper import pid_alive

OWNER = textwrap.dedent("""
    import subprocess, sys, time
    # stands in for the driver JVM: started with the folder's -Djava.io.tmpdir, after the reaper
    reaper = subprocess.Popen([sys.executable, "-m", "ftbridge.cluster.reaper", "--driver",
                               str(__import__("os").getpid()), sys.argv[1], "1"], start_new_session=True)
    jvm = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                            "-Djava.io.tmpdir=" + sys.argv[1] + "/tmp"])
    # another driver's JVM (its folder name extends this one's): not this reaper's business
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                              "-Djava.io.tmpdir=" + sys.argv[1] + "2/tmp"], start_new_session=True)
    print(jvm.pid, reaper.pid, other.pid, flush=True)
    time.sleep(600)
""")


def test_driver_mode_kills_the_child_and_removes_the_folder_after_the_owner_is_sigkilled(tmp_path):
    folder = tmp_path / "driver-folder"
    (folder / "tmp").mkdir(parents=True)
    (folder / "tmp" / "liblz4-java.so").write_bytes(b"x")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(__file__)))}
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    jvm, reaper, other = map(int, owner.stdout.readline().split())
    try:
        time.sleep(0.5)
        assert pid_alive(jvm) and pid_alive(reaper) and folder.exists()  # the owner lives: nothing happens
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (pid_alive(jvm) or folder.exists() or pid_alive(reaper)):
            time.sleep(0.2)
        assert not pid_alive(jvm), "the owner's child outlived it"
        assert not folder.exists(), "the folder outlived its owner"
        assert not pid_alive(reaper), "the reaper did not exit"
        assert pid_alive(other), "the reaper killed a process of another folder"
    finally:
        for pid in (jvm, reaper, other):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_usage_errors_exit_2():
    proc = subprocess.run([sys.executable, "-m", "ftbridge.cluster.reaper", "1"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "usage" in proc.stderr
