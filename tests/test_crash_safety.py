"""Crash safety: supervisord killed or reloaded at any moment loses nothing.

A seeded random sequence of startPartition, stopPartition,
destroyPartition, writeGroupConfig and removeGroupConfig calls (those
that have it with ``wait=False`` one time in three) runs against a real
supervisord, which another thread kills with SIGKILL or reloads with
``supervisorctl reload`` at a random moment, often while a call is in
flight. After a kill, as a node's reboot would, the orphaned children are
killed and supervisord is started again (offline, no listener); after
either, ``slapos.startAllPartitions()`` is called, as the listener does
offline. After every restart:

- supervisord starts: no half-written file or stray temporary file breaks
  its configuration;
- the include directory holds exactly the files the answered calls left
  (an answered ``wait=False`` stop or destroy included: it is final),
  each complete (``P.conf`` equal to what ``generate_partition_conf``
  writes, manager files equal to the text written); the partition of the
  call in flight at the kill may be found as before or after that call
  (for destroyPartition, at any point of its ordered file removals);
- the processes running are exactly those of these files, and no process
  of a partition runs twice (checked on the real OS processes, in /proc).

Rounds: ``SUPERVISOR_SLAPOS_CRASH_ROUNDS`` (default sized for CI); seed:
``SUPERVISOR_SLAPOS_CRASH_SEED`` (default random, printed).
"""

import collections
import os
import random
import signal
import subprocess

from testbed.node import SupervisorNode
from tests.crash import (
    PartitionState,
    Round,
    TimedDisruption,
    check_after_restart,
    check_os_processes,
    expected_processes,
    kill_orphans,
    make_layouts,
    run_calls,
    settle,
)

ROUNDS = int(os.environ.get('SUPERVISOR_SLAPOS_CRASH_ROUNDS', '40'))
SEED = int(
    os.environ.get('SUPERVISOR_SLAPOS_CRASH_SEED')
    or random.SystemRandom().randrange(2**32)
)
# The killer (or reloader) is armed right before call number 0 to
# MAX_CALLS_BEFORE_KILL of a round and fires 0 to MAX_KILL_DELAY seconds
# (uniform) later; a reload then takes supervisorctl's own start-up time.
MAX_CALLS_BEFORE_KILL = 4
MAX_KILL_DELAY = 0.012
DISRUPTIONS = ('kill', 'reload')
PARTITIONS = ('slappart0', 'slappart1', 'slappart2', 'slappart3')


# the test


class Disruption(TimedDisruption):
    """A SIGKILL of supervisord or a ``supervisorctl reload``, ``delay``
    seconds after it is armed, once, before call number ``at``. The
    reload is typed into a supervisorctl started beforehand, so that it
    lands within milliseconds, as the kill does."""

    def __init__(self, node, kind, delay, at):
        super().__init__(delay, at)
        self.kind = kind
        self.node = node
        self._ctl = None
        if kind == 'reload':
            self._ctl = subprocess.Popen(
                node.ctl_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def fire(self):
        if self._ctl is None:
            self.node.process.send_signal(signal.SIGKILL)
        else:
            self._ctl.communicate(b'reload\ny\n', timeout=120)

    def join(self):
        super().join()
        if not self.armed and self._ctl is not None:
            self._ctl.kill()
            self._ctl.wait()


def stop_dead(node):
    """Make sure supervisord is dead (killed, or killed now after a
    failure: its children survive, as in a crash) and forget it."""
    node.kill()
    node.process.stderr.close()
    node.process = None


def test_sigkill_or_reload_at_random_moments_loses_nothing(
    tmp_path, subreaper
):
    print(
        f'crash safety: {ROUNDS} rounds, seed {SEED} '
        f'(SUPERVISOR_SLAPOS_CRASH_SEED={SEED} to replay)'
    )
    rng = random.Random(SEED)
    node = SupervisorNode(tmp_path / 'node')
    layouts = make_layouts(node, rng, PARTITIONS)
    model = {pid: PartitionState() for pid in PARTITIONS}
    versions = {}
    stats = collections.Counter()
    session = None
    in_flight = None
    try:
        for number in range(ROUNDS):
            # the node (re)boots or has reloaded: then the offline start
            if node.process is None:
                node.start()
                session = node.process.pid
            landed = check_after_restart(node, model, in_flight)
            if landed:
                stats[f'call in flight landed {landed}'] += 1
            results = node.rpc.slapos.startAllPartitions()
            assert all(r['status'] == 80 for r in results), results
            running = settle(
                node,
                expected_processes(model, layouts),
                f'round {number}: after startAllPartitions',
                PARTITIONS,
            )
            check_os_processes(node, session, running, number)

            # calls until a SIGKILL or a reload from another thread,
            # armed right before a random call, fired a few milliseconds
            # later: inside that call, or a moment after it
            record = Round()
            disruption = Disruption(
                node,
                rng.choice(DISRUPTIONS),
                rng.uniform(0, MAX_KILL_DELAY),
                rng.randint(0, MAX_CALLS_BEFORE_KILL),
            )
            try:
                run_calls(
                    node, rng, model, layouts, versions, record, disruption
                )
            finally:
                disruption.join()
                if disruption.kind == 'kill' or not disruption.armed:
                    stop_dead(node)
            if node.process is None:
                kill_orphans(node, session)
            else:
                # reloaded, the same supervisord: a TERM lost before an
                # exec makes its stop wait stopwaitsecs (60 s), once
                node.wait_running(timeout=120)
            in_flight = record.in_flight
            stats['calls'] += record.completed
            stats['calls with wait=False'] += record.no_wait
            stats[
                f'{disruption.kind} in a call'
                if in_flight
                else f'{disruption.kind} between calls'
            ] += 1
        if node.process is None:
            node.start()
            session = node.process.pid
        check_after_restart(node, model, in_flight)
        print(
            f'crash safety: {ROUNDS} rounds, seed {SEED}, 0 failures; '
            f'{dict(sorted(stats.items()))}'
        )
    except BaseException:
        print(f'crash safety FAILED (seed {SEED}):\n{node.log_tail(60)}')
        raise
    finally:
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()
        if session is not None:
            kill_orphans(node, session)
