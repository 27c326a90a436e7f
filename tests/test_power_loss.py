"""Power loss: what an answered call or an accepted report wrote survives.

The node's ``include_dir`` and ``state_dir`` live on the filesystem of
tests/powerloss_fs.py, which keeps only what was fsynced and forgets the
rest at a power loss. A real supervisord with the plugin and its listener
(full sync, against a real ``slapos proxy``) runs a seeded random mix of:

- ``startPartition``, ``stopPartition``, ``destroyPartition``,
  ``writeGroupConfig``, ``removeGroupConfig`` called on partitions the
  master does not list;
- requested-state changes of the master's instances, which the listener
  syncs (applies and reports) at once, now and then with a new
  computer_json dump (a new format report);

until a power loss at a random moment: supervisord and all its children
are frozen then killed, and the filesystem forgets what was not fsynced.
Then, on what is left, before anything restarts:

- every answered call holds (an answered start: ``P.conf``, whole, as
  ``generate_partition_conf`` writes it; an answered stop or destroy: no
  ``P.conf``; manager files as written), the call in flight landed before
  or after, a master partition is in its requested state once a sync
  applied it (before or after while the change was being synced);
- every file of ``state_dir`` parses, and ``reported-states.json`` holds
  each report the master accepted once the listener's pass that sent it
  had ended;

and after the restart (the listener syncs at once): no report the master
accepted is sent again, instance state or format (counted on the
master's side), and
``startAllPartitions`` brings up exactly the processes of the started
partitions and of the managers' files.

A fresh node (no ``include_dir``, no ``state_dir`` before supervisord
starts) keeps its first answered call and first accepted report.

``tests/broken_fsync`` breaks the plugin's fsyncs in supervisord and the
listener (no file fsync, no directory fsync, none, plain ``os.makedirs``);
``test_power_loss_catches_a_broken_copy`` checks the loop catches each.

Rounds: ``SUPERVISOR_SLAPOS_POWERLOSS_ROUNDS`` (default sized for CI);
rounds allowed to catch a broken copy:
``SUPERVISOR_SLAPOS_POWERLOSS_BROKEN_ROUNDS``; seed:
``SUPERVISOR_SLAPOS_POWERLOSS_SEED`` (default random, printed).
"""

import collections
import json
import os
import random
import time
from pathlib import Path

import pytest

from supervisor_slapos.reportedstates import REPORTED_STATES_FILE
from testbed.polling import wait_until
from testbed.slapos_master import FORMAT, REPORT_STATE, write_dump
from tests.crash import (
    PartitionState,
    Round,
    TimedDisruption,
    check_after_restart,
    check_os_processes,
    expected_processes,
    gone,
    make_layouts,
    one_call,
    power_off,
    settle,
)
from tests.listener_node import EVENTS, listener_args

ROUNDS = int(os.environ.get('SUPERVISOR_SLAPOS_POWERLOSS_ROUNDS', '6'))
BROKEN_ROUNDS = int(
    os.environ.get('SUPERVISOR_SLAPOS_POWERLOSS_BROKEN_ROUNDS', '4')
)
SEED = int(
    os.environ.get('SUPERVISOR_SLAPOS_POWERLOSS_SEED')
    or random.SystemRandom().randrange(2**32)
)
BROKEN_FSYNC = Path(__file__).parent / 'broken_fsync'

MASTER_PARTITIONS = ('slappart0', 'slappart1')
DIRECT_PARTITIONS = ('slappart2', 'slappart3')
PARTITIONS = MASTER_PARTITIONS + DIRECT_PARTITIONS
MASTER_STEP_CHANCE = 0.4
# a master step also changes the computer_json dump (a new format report)
REFORMAT_CHANCE = 0.25
# The power loss is armed right before step 0 to MAX_STEPS_BEFORE_LOSS of
# a round and strikes 0 to a few ms (inside an RPC call) or 0 to
# MAX_LOSS_DELAY s (inside a sync) later.
MAX_STEPS_BEFORE_LOSS = 4
SHORT_LOSS_DELAY = 0.012
MAX_LOSS_DELAY = 0.6


class DataLost(AssertionError):
    """What a power loss must not do, it did."""


class PowerLoss(TimedDisruption):
    """Power off the node ``delay`` seconds after it is armed, once."""

    def __init__(self, node, session, delay, at):
        super().__init__(delay, at)
        self.node = node
        self.session = session

    def fire(self):
        power_off(self.node, self.session)


class MasterSide:
    """The master's side: requested states, and every report request it
    received (from the front's records) with the moments the listener's
    passes had surely ended (``last_success`` seen in getSyncState)."""

    def __init__(self, master, rng, dump):
        self.master = master
        self.dump = dump
        self.reformat(rng)
        master.proxy.supply()
        master.proxy.format({pid: [] for pid in MASTER_PARTITIONS})
        self.titles = {}  # pid -> title
        self.requested = {}  # pid -> state
        for number in range(len(MASTER_PARTITIONS)):
            title = f'inst{number}'
            state = rng.choice(('started', 'stopped'))
            answer = master.proxy.request(title, state=state)
            pid = answer['compute_partition_id']
            self.titles[pid] = title
            self.requested[pid] = state
        assert sorted(self.titles) == list(MASTER_PARTITIONS), self.titles
        self.passes_ended = []  # (seen at, last_success)

    def reformat(self, rng):
        """``slapos node format`` ran: new addresses in the computer_json
        dump, which the listener reports (once) at its next pass."""
        write_dump(
            self.dump,
            {
                pid: f'10.0.0.{rng.randint(2, 250)}'
                for pid in MASTER_PARTITIONS
            },
        )

    def request(self, pid, state):
        self.master.proxy.request(self.titles[pid], state=state)
        self.requested[pid] = state

    def model(self, pid):
        return PartitionState(self.requested[pid] == 'started')

    def saw_sync_state(self, state):
        """A pass ended, seen now: if it had no error, each report it sent
        was accepted and kept. (One with an error may have had a report
        refused or timed out: sending that again is right.)"""
        if state['last_error'] == '':
            self.passes_ended.append((time.time(), state['last_success']))

    def reports(self):
        """[(arrival, what, state)] of the report requests, in order:
        instance states (``what`` an instance guid) and format reports
        (``what`` 'format', the state the partitions sent)."""
        front = self.master.front
        reports = [
            (at, body['instance_guid'], body['reported_state'])
            for at, body in front.arrived(REPORT_STATE)
        ]
        reports += [
            (at, 'format', json.dumps(body, sort_keys=True))
            for at, body in front.arrived(FORMAT)
        ]
        return sorted(reports)

    def surely_kept(self, arrival, before):
        """Whether a report that arrived at ``arrival`` was surely kept by
        the listener (its pass had ended) as seen before ``before``."""
        return any(
            last_success >= arrival and seen <= before
            for seen, last_success in self.passes_ended
        )

    def check_no_report_sent_again(self):
        last = {}
        for arrival, guid, state in self.reports():
            previous = last.get(guid)
            if (
                previous is not None
                and previous[1] == state
                and self.surely_kept(previous[0], arrival)
            ):
                raise DataLost(
                    f'report {guid} {state} accepted at {previous[0]:.3f} '
                    f'(and kept) sent again at {arrival:.3f}'
                )
            last[guid] = (arrival, state)

    def check_reported_states(self, state_dir):
        """reported-states.json holds every surely kept last report."""
        path = state_dir / REPORTED_STATES_FILE
        kept = json.loads(path.read_text()) if path.exists() else {}
        last = {}
        for arrival, guid, state in self.reports():
            last[guid] = (arrival, state)
        for guid, (arrival, state) in last.items():
            if guid != 'format' and self.surely_kept(arrival, time.time()):
                assert kept.get(guid) == state, (
                    f'{REPORTED_STATES_FILE} holds {kept.get(guid)!r} for '
                    f'{guid}, whose report {state!r} the master accepted'
                )


def check_state_dir(state_dir):
    """Every file of ``state_dir`` is whole: it parses."""
    for path in state_dir.iterdir():
        if path.suffix == '.json':
            json.loads(path.read_text())


def make_powerloss_node(make_node, fs, master, broken=None):
    environ = {}
    if broken:
        environ = {
            'PYTHONPATH': str(BROKEN_FSYNC),
            'SUPERVISOR_SLAPOS_BROKEN_FSYNC': broken,
        }
    return make_node(
        # a loaded machine must not make the loopback master look down
        listener=listener_args(
            master.master.url,
            '--timeout',
            '10',
            '--computer-json',
            str(master.dump),
        ),
        listener_events=EVENTS,
        include_dir=fs.mountpoint / 'etc' / 'supervisord.conf.d',
        state_dir=fs.mountpoint / 'state',
        environ=environ,
    )


def wait_synced(node, master, since, give_up=lambda: False):
    """Wait for a listener pass that started after ``since`` and ended;
    False when ``give_up()`` first or supervisord went away."""
    seen = {}

    def synced():
        if give_up():
            return True
        try:
            seen['state'] = node.sync_state()
        except Exception as error:
            if gone(error):
                return True
            raise
        return seen['state']['last_attempt'] > since

    wait_until(synced, 60, what='a listener sync')
    if 'state' not in seen or seen['state']['last_attempt'] <= since:
        return False
    assert seen['state']['mode'] == 'online', seen['state']
    master.saw_sync_state(seen['state'])
    return True


def master_step(node, master, rng, model, uncertain, loss):
    """Change a requested state, ask the listener to sync, wait for it;
    False when the power loss met it."""
    pid = rng.choice(MASTER_PARTITIONS)
    state = rng.choice(('started', 'stopped'))
    uncertain[pid] = [model[pid], PartitionState(state == 'started')]
    master.request(pid, state)
    if rng.random() < REFORMAT_CHANCE:
        master.reformat(rng)
    since = time.time()
    try:
        node.rpc.supervisor.sendRemoteCommEvent('slapos-sync', '')
    except Exception as error:
        if gone(error):
            return False
        raise
    if not wait_synced(node, master, since, loss.fired.is_set):
        return False
    model[pid] = master.model(pid)
    del uncertain[pid]
    return True


def check_after_power_loss(node, master, model, in_flight, uncertain):
    """What the durable state must hold, read before anything restarts."""
    try:
        landed = check_after_restart(node, model, in_flight, uncertain)
        check_state_dir(node.state_dir)
        master.check_reported_states(node.state_dir)
    except (AssertionError, OSError, ValueError) as error:
        raise DataLost(f'after a power loss: {error!r}') from error
    return landed


def start_and_check(node, master, model, layouts, number):
    """Start supervisord; wait for the listener's start sync; check that
    no report was sent again and that exactly the started partitions
    run. Return supervisord's pid."""
    since = time.time()
    node.start()
    assert wait_synced(node, master, since)
    for pid in MASTER_PARTITIONS:
        model[pid] = master.model(pid)
    master.check_no_report_sent_again()
    results = node.rpc.slapos.startAllPartitions()
    assert all(r['status'] == 80 for r in results), results
    running = settle(
        node,
        expected_processes(model, layouts),
        f'round {number}: after startAllPartitions',
        set(PARTITIONS),
    )
    check_os_processes(
        node, node.process.pid, running, number, others=('slapos',)
    )
    return node.process.pid


def power_loss_loop(node, fs, master, layouts, rng, rounds, stats):
    """The rounds; raises DataLost at the first loss found."""
    model = {pid: PartitionState() for pid in PARTITIONS}
    versions = {}
    for number in range(rounds):
        session = start_and_check(node, master, model, layouts, number)
        record = Round()
        uncertain = {}
        delay = rng.choice((SHORT_LOSS_DELAY, MAX_LOSS_DELAY))
        loss = PowerLoss(
            node,
            session,
            rng.uniform(0, delay),
            rng.randint(0, MAX_STEPS_BEFORE_LOSS),
        )
        step = 0
        try:
            while not loss.fired.is_set():
                if step == loss.at:
                    loss.arm()
                step += 1
                record.in_flight = None
                if rng.random() < MASTER_STEP_CHANCE:
                    if not master_step(
                        node, master, rng, model, uncertain, loss
                    ):
                        break
                    stats['master steps'] += 1
                elif not one_call(
                    node,
                    rng,
                    model,
                    layouts,
                    versions,
                    record,
                    loss,
                    DIRECT_PARTITIONS,
                ):
                    break
        finally:
            loss.join()
        node.process.stderr.close()
        node.process = None
        stats['changes lost'] += fs.power_loss()
        stats['calls'] += record.completed
        landed = check_after_power_loss(
            node, master, model, record.in_flight, uncertain
        )
        if landed:
            stats[f'call in flight landed {landed}'] += 1
        stats['syncs in flight'] += bool(uncertain)
        stats['rounds'] += 1
    start_and_check(node, master, model, layouts, rounds)
    for _, what, _ in master.reports():
        stats['format reports' if what == 'format' else 'state reports'] += 1


def prepare(make_node, fs, master, rng, broken=None, fresh=False):
    """The master, the node and its partitions' layouts; ``include_dir``
    and ``state_dir`` made and durable, unless ``fresh``."""
    # the computer_json dump is the node's own, outside the plugin's dirs
    master = MasterSide(master, rng, fs.mountpoint.parent / 'slapos.json')
    node = make_powerloss_node(make_node, fs, master, broken)
    layouts = make_layouts(node, rng, PARTITIONS)
    if not fresh:
        node.include_dir.mkdir(parents=True)
        node.state_dir.mkdir(parents=True)
        fs.sync()
    return master, node, layouts


def first_call_then_power_loss(node, fs, master, layouts):
    """A fresh node: supervisord makes include_dir and state_dir, the
    listener syncs (reports kept), one startPartition answered, then the
    power loss; raises DataLost if any of it is gone."""
    assert not node.include_dir.exists() and not node.state_dir.exists()
    model = {pid: PartitionState() for pid in PARTITIONS}
    session = start_and_check(node, master, model, layouts, 0)
    pid = DIRECT_PARTITIONS[0]
    assert node.rpc.slapos.startPartition(pid) is True
    model[pid] = PartitionState(True)
    power_off(node, session)
    node.process.stderr.close()
    node.process = None
    fs.power_loss()
    check_after_power_loss(node, master, model, None, {})
    start_and_check(node, master, model, layouts, 1)


def test_power_loss_at_random_moments_loses_nothing(
    powerloss_fs, make_node, master, subreaper
):
    print(
        f'power loss: {ROUNDS} rounds, seed {SEED} '
        f'(SUPERVISOR_SLAPOS_POWERLOSS_SEED={SEED} to replay)'
    )
    rng = random.Random(SEED)
    master, node, layouts = prepare(make_node, powerloss_fs, master, rng)
    stats = collections.Counter()
    started = time.monotonic()
    try:
        power_loss_loop(
            node, powerloss_fs, master, layouts, rng, ROUNDS, stats
        )
    except BaseException:
        print(f'power loss FAILED (seed {SEED}):\n{node.log_tail(60)}')
        raise
    print(
        f'power loss: {ROUNDS} rounds, seed {SEED}, 0 failures in '
        f'{time.monotonic() - started:.1f} s; {dict(sorted(stats.items()))}'
    )


@pytest.mark.parametrize('broken', ['file', 'dir', 'all', 'listener:all'])
def test_power_loss_catches_a_broken_copy(
    powerloss_fs, make_node, master, subreaper, broken
):
    """The loop is not blind: with the fsyncs of ``supervisor_slapos.files``
    broken in supervisord and the listener, it finds a loss within
    BROKEN_ROUNDS rounds."""
    rng = random.Random(SEED)
    master, node, layouts = prepare(
        make_node, powerloss_fs, master, rng, broken
    )
    stats = collections.Counter()
    with pytest.raises(DataLost) as caught:
        power_loss_loop(
            node, powerloss_fs, master, layouts, rng, BROKEN_ROUNDS, stats
        )
    print(
        f'power loss, broken copy {broken!r}: caught in round '
        f'{stats["rounds"] + 1} (seed {SEED}): {caught.value}'
    )


def test_power_loss_on_a_fresh_node_keeps_the_first_answered_call(
    powerloss_fs, make_node, master, subreaper
):
    rng = random.Random(SEED)
    master, node, layouts = prepare(
        make_node, powerloss_fs, master, rng, fresh=True
    )
    first_call_then_power_loss(node, powerloss_fs, master, layouts)


def test_power_loss_on_a_fresh_node_catches_plain_makedirs(
    powerloss_fs, make_node, master, subreaper
):
    """The fresh-node check is not blind: with include_dir and state_dir
    made by a plain ``os.makedirs`` (no fsync of their parents), the
    first answered call is lost."""
    rng = random.Random(SEED)
    master, node, layouts = prepare(
        make_node, powerloss_fs, master, rng, 'mkdirs', fresh=True
    )
    with pytest.raises(DataLost):
        first_call_then_power_loss(node, powerloss_fs, master, layouts)
