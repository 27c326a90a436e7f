"""Sync with a real SlapOS master (``slapos proxy``, from slapos.core).

M instances are requested ``started`` on M partitions (2 sleepers each) of
a node whose include directory is empty. A recording proxy in front of the
master counts the requests (testbed/slapos_master.py).

- plugin: supervisord starts with the listener pointed at the master; the
  cold sync lasts from supervisord's fork until every partition runs and
  every ``started`` report reached the master. Then syncs are triggered
  with nothing changed (``sendRemoteCommEvent('slapos-sync')``) and their
  master requests counted.
- baseline: plain supervisord and a client doing what slapgrid does for
  each instance: write P.conf, ``reloadConfig()`` + ``addProcessGroup``,
  ``startProcessGroup(P, False)``, then report ``started``; timed from
  supervisord's fork too.
"""

import contextlib
import time

import requests

from bench.common import (
    PROCESSES_PER_PARTITION,
    RUN_ENTRIES,
    Outcome,
    Row,
    Target,
    running_node,
    workdir,
)
from bench.scoped import slapgrid_update
from supervisor_slapos.files import atomic_write
from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.polling import wait_until
from testbed.slapos_master import COMPUTER_ID, LIST, REPORT_STATE, Master

NAME = 'sync'
EVENTS = 'SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60,REMOTE_COMMUNICATION'
STEADY_SYNCS = 3
TIMEOUT = 900


def prepare_master(master, count):
    partitions = [f'p{i}' for i in range(count)]
    master.proxy.supply()
    master.proxy.format({pid: [] for pid in partitions})
    for index in range(count):
        master.proxy.request(f'inst{index}', state='started')
    listed = master.proxy.instance_list()['result_list']
    assert len(listed) == count, len(listed)
    return partitions


def all_running(rpc, count):
    infos = [
        i for i in rpc.supervisor.getAllProcessInfo() if i['group'] != 'slapos'
    ]
    return len(infos) == count * PROCESSES_PER_PARTITION and all(
        i['statename'] == 'RUNNING' for i in infos
    )


@contextlib.contextmanager
def unsynced_node(root, master, partitions, **kwargs):
    """A node (not started) with ``partitions`` made and no P.conf (the
    sync writes them), the master's record of requests cleared."""
    with running_node(root, **kwargs) as node:
        for pid in partitions:
            node.make_partition(pid, run=list(RUN_ENTRIES))
        master.front.requests.clear()
        yield node


def plugin_sync(root, master, partitions):
    count = len(partitions)
    listener = [
        '--master-url',
        master.url,
        '--computer-id',
        COMPUTER_ID,
        '--timeout',
        '10',
    ]
    with unsynced_node(
        root / 'plugin',
        master,
        partitions,
        listener=listener,
        listener_events=EVENTS,
    ) as node:
        launched = time.perf_counter()
        node.start(wait=False)
        wait_until(
            lambda: (
                master.front.count(REPORT_STATE, reported_state='started')
                >= count
            ),
            TIMEOUT,
            interval=0.05,
            what=f'{count} started reports',
        )
        reported = time.perf_counter()
        rpc = node.rpc
        wait_until(lambda: all_running(rpc, count), 60, what='all running')
        cold = max(reported, time.perf_counter()) - launched
        cold_requests = len(master.front.requests)

        steady = []
        before_requests = len(master.front.requests)
        for _ in range(STEADY_SYNCS):
            before = rpc.slapos.getSyncState()['last_success']
            start = time.perf_counter()
            rpc.supervisor.sendRemoteCommEvent('slapos-sync', '')
            wait_until(
                lambda before=before: (
                    rpc.slapos.getSyncState()['last_success'] > before
                ),
                120,
                interval=0.02,
                what='a steady sync',
            )
            steady.append(time.perf_counter() - start)
        recorded = master.front.requests[before_requests:]
        lists = sum(1 for endpoint, _ in recorded if endpoint == LIST)
        reports = sum(
            1 for endpoint, _ in recorded if endpoint == REPORT_STATE
        )
        state = rpc.slapos.getSyncState()
        assert state['mode'] == 'online' and not state['last_error'], state
    return cold, cold_requests, steady, lists, reports, len(recorded)


def baseline_sync(root, master, partitions):
    count = len(partitions)
    session = requests.Session()

    def post(endpoint, body):
        answer = session.post(
            f'{master.url}/{endpoint}', json=body, timeout=30
        )
        answer.raise_for_status()
        return answer.json()

    with unsynced_node(
        root / 'base', master, partitions, plugin=False
    ) as node:
        launched = time.perf_counter()
        node.start()
        rpc = node.rpc
        listed = post(LIST, {'computer_guid': COMPUTER_ID})['result_list']
        for instance in listed:
            pid = instance['compute_partition_id']
            assert instance['state'] == 'started', instance
            atomic_write(
                node.include_file(f'{pid}.conf'),
                generate_partition_conf(str(node.instance_root), pid),
            )
            slapgrid_update(rpc)
            rpc.supervisor.startProcessGroup(pid, False)
            post(
                REPORT_STATE,
                {
                    'instance_guid': instance['instance_guid'],
                    'reported_state': 'started',
                },
            )
        wait_until(lambda: all_running(rpc, count), 60, what='all running')
        cold = time.perf_counter() - launched
        cold_requests = len(master.front.requests)
        # leave the master as the plugin found it: nothing reported yet
    return cold, cold_requests


def run(count=200):
    outcome = Outcome(NAME)
    with workdir() as root:
        master = Master(root / 'master')
        try:
            partitions = prepare_master(master, count)
            base_cold, base_requests = baseline_sync(root, master, partitions)
            (cold, cold_requests, steady, lists, reports, recorded) = (
                plugin_sync(root, master, partitions)
            )
        finally:
            master.close()
    outcome.rows.append(
        Row(
            NAME,
            count,
            f'cold sync of {count} instances',
            cold * 1000,
            base_cold * 1000,
            note=f'baseline: slapgrid-style client; master requests: '
            f'{cold_requests} (plugin), {base_requests} (baseline)',
        )
    )
    outcome.rows.append(
        Row(
            NAME,
            count,
            'steady sync, nothing changed',
            sorted(steady)[len(steady) // 2] * 1000,
            note=f'{STEADY_SYNCS} syncs: {lists} list requests, {reports} '
            f'reports, {recorded} requests in all',
        )
    )
    per_sync = recorded / STEADY_SYNCS
    outcome.targets.append(
        Target(
            'steady state: one master request and no report per sync',
            f'{per_sync:g} request(s), {reports} report(s) per '
            f'{STEADY_SYNCS} syncs',
            per_sync == 1 and lists == STEADY_SYNCS and reports == 0,
        )
    )
    return outcome
