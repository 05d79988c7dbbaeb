"""The host's CPU is attributed to the gateway's whole process tree (``ops/bench/proc_tree.py``):
its model servers and function runtime each start a session of their own, and so does every
function instance the runtime starts, so the gateway's session alone (the old attribution)
missed all of them. A small real tree of the same shape: a root, a "model server" and a
"function runtime" in new sessions, and an "instance" the runtime starts in a new session
that burns some CPU before it waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ops.bench.host_cpu import session_cpu_s
from ops.bench.proc_tree import TICK, tree_roles, tree_ticks

SLEEP = "/bin/sleep"
BURN_S = 0.3
# the "instance": burns BURN_S of CPU (its own clock, not the wall's), says so, then waits
INSTANCE = (
    "import sys, time\n"
    f"while time.process_time() < {BURN_S}: pass\n"
    "print('burnt', flush=True)\n"
    "time.sleep(120)\n"
)
RUNTIME = (
    "import subprocess, sys, time\n"
    # the mark built here: its own command line must not name an instance
    f"subprocess.Popen([sys.executable, '-c', {INSTANCE!r}, 'burst.faas.' + 'instance'],"
    " start_new_session=True)\n"
    "time.sleep(120)\n"
)
ROOT = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen(['ops model-server', '120'], executable={SLEEP!r}, start_new_session=True)\n"
    f"subprocess.Popen([sys.executable, '-c', {RUNTIME!r}, 'function-runtime'],"
    " start_new_session=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def tree():
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    root = subprocess.Popen(
        [sys.executable, "-c", ROOT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    # an unrelated process in a new session: not the gateway's
    stranger = subprocess.Popen([SLEEP, "120"], start_new_session=True)
    try:
        assert root.stdout is not None
        assert root.stdout.readline().strip() == "burnt"  # the instance has run and waits
        yield root.pid, stranger.pid
    finally:
        for pid in tree_roles(root.pid):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        stranger.kill()
        root.wait(10)
        stranger.wait(10)


def test_the_tree_walk_finds_every_descendant_whatever_its_session_with_its_role(tree):
    root, stranger = tree
    roles = tree_roles(root)
    assert sorted(roles.values()) == ["gateway", "instances", "model_servers", "runtime"]
    assert roles[str(root)] == "gateway"
    assert str(stranger) not in roles
    sessions = {int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[3]) for pid in roles}
    assert len(sessions) == 4  # each in a session of its own


def test_an_instances_cpu_counts_in_the_tree_not_in_the_gateways_session(tree):
    root, _ = tree
    by_role: dict[str, float] = {}
    for role, ticks in tree_ticks(root).values():
        by_role[role] = by_role.get(role, 0.0) + ticks / TICK
    # it burnt BURN_S by its own clock; /proc counts in ticks (one tick's rounding)
    assert by_role["instances"] >= BURN_S - 2.0 / TICK
    # the old attribution (the root's session) sees the root alone: less than the instance
    assert session_cpu_s(root) < by_role["instances"]
