"""One sync pass: the plan (pure rules), its apply and the reports, with
fakes; then, on real supervisords against a real ``slapos proxy``, a
partition whose group an operator removed, and a listener killed in the
middle of its reports."""

import json
import os
import signal
import xmlrpc.client

import pytest

from supervisor_slapos.faults import Faults
from supervisor_slapos.reportedstates import ReportedStates
from supervisor_slapos.syncpass import Step, needed_call, plan
from testbed.listener_fakes import (
    bad_answer,
    down,
    instance,
    running_partition,
)
from testbed.polling import wait_until
from testbed.slapos_master import REPORT_STATE
from tests.listener_node import (
    make_listening_node,
    register,
    reports,
    request,
    trigger_sync,
)

# plan


def test_plan_groups_by_partition_in_order():
    steps, errors = plan(
        [
            instance('slappart2', 'stopped'),
            instance('slappart10', 'started', guid='a'),
            instance('slappart10', 'started', guid='b'),
        ]
    )
    assert steps == [
        Step('slappart10', 'started', ('a', 'b')),
        Step('slappart2', 'stopped', ('guid-slappart2',)),
    ]
    assert errors == []


def test_plan_skips_invalid_ids_and_conflicts():
    steps, errors = plan(
        [
            instance('../x', 'started', guid='bad'),
            instance('slappart0', 'started', guid='g1'),
            instance('slappart0', 'destroyed', guid='g2'),
        ]
    )
    assert steps == []
    assert "skipping instance 'bad'" in errors[0]
    assert 'conflicting states destroyed/started' in errors[1]


# needed_call


def info(state='started', processes=(), files=('slappart0.conf',)):
    return {
        'state': state,
        'files': list(files),
        'processes': [
            {'group': g, 'name': 'a', 'statename': s} for g, s in processes
        ],
    }


@pytest.mark.parametrize(
    'state, partition, call',
    [
        ('started', info(processes=[('slappart0', 'RUNNING')]), None),
        (
            'started',
            info(processes=[('slappart0', 'EXITED')]),
            'startPartition',
        ),
        # P.conf there but group P gone (removed by an operator): not running
        ('started', info(), 'startPartition'),
        (
            'started',
            info(processes=[('slappart0-mgr', 'RUNNING')]),
            'startPartition',
        ),
        ('started', {}, 'startPartition'),
        ('stopped', info('stopped', files=['slappart0-mgr.conf']), None),
        ('stopped', {}, None),
        ('stopped', info(), 'stopPartition'),
        ('destroyed', {}, None),
        (
            'destroyed',
            info('stopped', files=['slappart0-mgr.conf']),
            'destroyPartition',
        ),
    ],
)
def test_needed_call(state, partition, call):
    assert needed_call('slappart0', state, partition) == call


# ReportedStates


def test_reported_states_are_written_as_each_is_accepted(tmp_path, make):
    h = make(master=False)
    states = ReportedStates(str(h.state_dir), h.make().logger).load()
    states.accepted('g1', 'started')
    assert ReportedStates(str(h.state_dir), None).load().states == {
        'g1': 'started'
    }
    states.accepted('g2', 'stopped')
    states.forget(['g1'])
    assert h.reported_file() == {'g2': 'stopped'}


# the sync pass through the listener (fakes)


def test_sync_applies_each_requested_state(make):
    h = make(
        partitions={
            'slappart1': running_partition('slappart1'),
            'slappart2': {'files': ['slappart2-x.conf']},
            'slappart0': {},
        },
        instances=[
            instance('slappart0', 'started'),
            instance('slappart1', 'stopped'),
            instance('slappart2', 'destroyed'),
        ],
    )
    h.start()
    assert h.slapos.sync_actions() == [
        ('startPartition', 'slappart0'),
        ('stopPartition', 'slappart1'),
        ('destroyPartition', 'slappart2'),
    ]
    assert h.master.reports() == [
        ('guid-slappart0', 'started'),
        ('guid-slappart1', 'stopped'),
    ]
    assert h.reported_file() == {
        'guid-slappart0': 'started',
        'guid-slappart1': 'stopped',
    }


def test_sync_does_not_restart_a_running_partition(make):
    h = make(
        partitions={'slappart0': running_partition('slappart0', ('a', 'b'))},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == [('guid-slappart0', 'started')]


@pytest.mark.parametrize(
    'statename', ['EXITED', 'FATAL', 'STOPPED', 'BACKOFF']
)
def test_sync_starts_a_started_partition_not_all_running(make, statename):
    part = running_partition('slappart0', ('a', 'b'))
    part['processes'][1]['statename'] = statename
    h = make(
        partitions={'slappart0': part},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]


def test_sync_ignores_manager_processes_for_running_check(make):
    part = running_partition('slappart0')
    part['processes'].append(
        {
            'name': 'm',
            'group': 'slappart0-mgr',
            'statename': 'STOPPED',
            'pid': 0,
        }
    )
    h = make(
        partitions={'slappart0': part},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    assert h.slapos.sync_actions() == []


def test_sync_does_not_stop_a_stopped_partition(make):
    h = make(
        partitions={'slappart0': {'files': ['slappart0-mgr.conf']}},
        instances=[instance('slappart0', 'stopped')],
    )
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == [('guid-slappart0', 'stopped')]


def test_sync_does_not_stop_a_partition_without_files(make):
    h = make(instances=[instance('slappart0', 'stopped')])
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == [('guid-slappart0', 'stopped')]


def test_sync_does_not_destroy_what_is_gone(make):
    h = make(instances=[instance('slappart0', 'destroyed')])
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == []


def test_sync_leaves_unlisted_partitions_alone(make):
    h = make(
        partitions={
            'slappart0': running_partition('slappart0'),
            'slappart9': running_partition('slappart9'),
        },
        instances=[instance('slappart0', 'stopped')],
    )
    h.start()
    touched = {c[1] for c in h.slapos.calls if len(c) > 1}
    assert touched == {'slappart0'}


def test_sync_reports_once_per_change(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    h.tick()
    h.tick()
    assert h.master.reports() == [('guid-slappart0', 'started')]
    h.master.instances = [instance('slappart0', 'stopped')]
    h.tick()
    h.tick()
    assert h.master.reports() == [
        ('guid-slappart0', 'started'),
        ('guid-slappart0', 'stopped'),
    ]


def test_reported_states_survive_a_listener_restart(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    h.start()  # a new listener process, same state_dir
    assert h.master.reports() == [('guid-slappart0', 'started')]


def test_corrupt_reported_states_file_starts_afresh(make):
    h = make(
        partitions={'slappart0': running_partition('slappart0')},
        instances=[instance('slappart0', 'started')],
    )
    (h.state_dir / 'reported-states.json').write_text('{"guid-sl')
    h.start()
    assert 'ignoring unreadable' in h.log()
    assert h.master.reports() == [('guid-slappart0', 'started')]
    assert h.reported_file() == {'guid-slappart0': 'started'}


@pytest.mark.parametrize('content', ['[]', '{"g": "destroyed", "h": 3}'])
def test_malformed_reported_states_are_dropped(make, content):
    h = make(master=False)
    (h.state_dir / 'reported-states.json').write_text(content)
    assert h.start().policy.reported.states == {}


def two_started_partitions(make):
    """A harness whose master wants slappart0 and slappart1 started."""
    return make(
        partitions={'slappart0': {}, 'slappart1': {}},
        instances=[
            instance('slappart0', 'started'),
            instance('slappart1', 'started'),
        ],
    )


def test_failed_report_is_sent_on_the_next_sync(make):
    h = two_started_partitions(make)
    h.master.report_errors['guid-slappart0'] = bad_answer('HTTP 403')
    h.start()
    assert h.master.reports() == [
        ('guid-slappart0', 'started'),
        ('guid-slappart1', 'started'),
    ]
    assert (
        'reporting guid-slappart0 started: HTTP 403'
        in h.sync_state().last_error
    )
    assert h.sync_state().mode == 'online'
    del h.master.report_errors['guid-slappart0']
    h.tick()
    assert h.master.reports()[2:] == [('guid-slappart0', 'started')]
    assert h.sync_state().last_error == ''


def test_unreachable_master_postpones_the_other_reports(make):
    h = two_started_partitions(make)
    h.master.report_errors['guid-slappart0'] = down('timed out')
    h.start()
    # the second partition is still started, its report waits
    assert h.slapos.sync_actions() == [
        ('startPartition', 'slappart0'),
        ('startPartition', 'slappart1'),
    ]
    assert h.master.reports() == [('guid-slappart0', 'started')]
    h.master.report_errors.clear()
    h.tick()
    assert h.master.reports()[1:] == [
        ('guid-slappart0', 'started'),
        ('guid-slappart1', 'started'),
    ]


def test_destroy_forgets_the_reported_state(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    h.master.instances = [instance('slappart0', 'destroyed')]
    h.tick()
    assert h.reported_file() == {}
    # the same instance started again is reported again
    h.master.instances = [instance('slappart0', 'started')]
    h.tick()
    assert h.master.reports() == [('guid-slappart0', 'started')] * 2


def test_instances_no_longer_listed_are_forgotten(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    h.master.instances = []
    h.tick()
    assert h.reported_file() == {}


@pytest.mark.parametrize(
    'pid', ['../x', '', 'slap_part', 'a' * 65, 'slappart0.conf', 'x y']
)
def test_invalid_partition_id_is_skipped(make, pid):
    h = make(
        partitions={'slappart0': {}},
        instances=[
            instance(pid, 'destroyed', guid='bad'),
            instance('slappart0', 'started'),
        ],
    )
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]
    assert all(c[1] != pid for c in h.slapos.calls if len(c) > 1)
    assert 'invalid partition id' in h.sync_state().last_error
    assert h.master.reports() == [('guid-slappart0', 'started')]


def test_one_partition_error_does_not_stop_the_others(make):
    h = make(
        partitions={'slappart1': {}, 'slappart2': {}},
        dirs={'slappart2'},  # slappart1 has no directory here
        instances=[
            instance('slappart1', 'started'),
            instance('slappart2', 'started'),
        ],
    )
    h.start()
    assert h.slapos.sync_actions() == [
        ('startPartition', 'slappart1'),
        ('startPartition', 'slappart2'),
    ]
    assert h.master.reports() == [('guid-slappart2', 'started')]
    state = h.sync_state()
    assert state.mode == 'online'
    assert 'slappart1: started failed: NO_PARTITION' in state.last_error


def test_fault_from_plugin_on_invalid_name_is_logged(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[instance('slappart0', 'started')],
    )
    h.slapos.fail[('startPartition', 'slappart0')] = xmlrpc.client.Fault(
        Faults.INVALID_NAME, 'INVALID_NAME: slappart0'
    )
    h.start()
    assert 'slappart0: started failed: INVALID_NAME' in h.log()


def test_sync_reads_all_partitions_in_one_call(make):
    pids = [f'slappart{n}' for n in range(5)]
    h = make(
        partitions={p: running_partition(p) for p in pids},
        instances=[instance(p, 'started') for p in pids],
    )
    h.start()
    assert h.slapos.calls == [
        ('getStateDir',),
        ('getAllPartitionInfo',),
        ('startAllPartitions',),
    ]


def test_supervisord_going_away_interrupts_the_sync(make):
    h = two_started_partitions(make)
    h.slapos.fail['startPartition'] = ConnectionRefusedError(111, 'refused')
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]
    assert 'sync interrupted' in h.sync_state().last_error
    # and it is still alive and serving
    del h.slapos.fail['startPartition']
    h.tick()
    assert h.master.reports() == [
        ('guid-slappart0', 'started'),
        ('guid-slappart1', 'started'),
    ]


def test_supervisord_not_answering_skips_the_sync(make):
    h = make(
        partitions={'slappart0': running_partition('slappart0')},
        instances=[instance('slappart0', 'started')],
    )
    h.slapos.fail['getAllPartitionInfo'] = xmlrpc.client.Fault(
        6, 'SHUTDOWN_STATE'
    )
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == []
    state = h.sync_state()
    assert state.mode == 'online'
    assert 'getAllPartitionInfo failed: SHUTDOWN_STATE' in state.last_error


@pytest.mark.parametrize(
    'answer',
    [
        None,
        'x',
        42,
        {},
        [None, 'x', {'partition_id': 3}],
        [{'partition_id': 'slappart0', 'state': 'started', 'processes': 'x'}],
        [
            {
                'partition_id': 'slappart0',
                'state': 'started',
                'processes': ['x', None],
            }
        ],
    ],
)
def test_garbage_partition_info_is_survived(make, answer):
    h = make(
        partitions={'slappart0': {}},
        instances=[instance('slappart0', 'started')],
    )
    h.slapos.getAllPartitionInfo = lambda: answer
    h.start()
    assert h.slapos.sync_actions() in ([('startPartition', 'slappart0')], [])
    assert 'unexpected error' not in h.log()
    assert h.master.reports() == [('guid-slappart0', 'started')]


def test_conflicting_duplicates_leave_the_partition_alone(make):
    h = make(
        partitions={'slappart0': running_partition('slappart0')},
        instances=[
            instance('slappart0', 'started', guid='g1'),
            instance('slappart0', 'destroyed', guid='g2'),
        ],
    )
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == []
    assert 'conflicting states destroyed/started' in h.sync_state().last_error


def test_agreeing_duplicates_are_applied_once_and_each_reported(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[
            instance('slappart0', 'started', guid='g1'),
            instance('slappart0', 'started', guid='g2'),
        ],
    )
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]
    assert h.master.reports() == [('g1', 'started'), ('g2', 'started')]


def test_sync_order_is_deterministic(make):
    pids = ['slappart10', 'slappart2', 'slappart1']
    h = make(
        partitions={p: {} for p in pids},
        instances=[instance(p, 'started') for p in pids],
    )
    h.start()
    assert [c[1] for c in h.slapos.sync_actions()] == sorted(pids)


# real supervisords, a real slapos proxy


def test_started_partition_whose_group_was_removed_is_started_again(
    make_node, master
):
    register(master)
    guid, pid = request(master, 'inst0', 'started')
    node = make_listening_node(make_node, master.url)
    node.start()
    wait_until(
        lambda: node.group_running(pid) and reports(master, guid, 'started'),
        30,
        what='the first sync',
    )
    node.wait_execed(pid)
    for command in (('stop', f'{pid}:*'), ('remove', pid)):
        result = node.ctl(*command)
        assert result.returncode == 0, result.stdout + result.stderr
    assert node.processes(pid) == {}
    assert node.rpc.slapos.getPartitionInfo(pid)['state'] == 'started'
    trigger_sync(node)
    wait_until(
        lambda: node.group_running(pid), 30, what=f'{pid} started again'
    )
    assert reports(master, guid, 'started') == 1  # unchanged: not again


def test_listener_killed_mid_sync_re_reports_nothing_accepted(
    make_node, master
):
    register(master)
    guids = [request(master, f'inst{n}', 'started')[0] for n in range(3)]
    node = make_listening_node(make_node, master.url)
    # each report answered 1 s late (the listener waits 2 s at most)
    master.front.set_fault('delay', REPORT_STATE, status=1)
    node.start()
    accepted_file = node.root / 'etc' / 'reported-states.json'

    def accepted():
        try:
            return json.loads(accepted_file.read_text())
        except (OSError, ValueError):
            return {}

    # the first report answered, the second on its way: kill the listener
    wait_until(
        lambda: master.front.count(REPORT_STATE) == 2,
        30,
        what='a second report under way',
    )
    os.kill(
        node.rpc.supervisor.getProcessInfo('slapos')['pid'], signal.SIGKILL
    )
    first = master.front.calls(REPORT_STATE)[0]['instance_guid']
    master.front.set_fault(None)
    # supervisord restarts the listener, which syncs at its start
    wait_until(lambda: len(accepted()) == 3, 30, what='every report')
    wait_until(
        lambda: node.sync_state()['mode'] == 'online',
        30,
        what='the new listener synced',
    )
    assert reports(master, first, 'started') == 1
    assert sorted(accepted()) == sorted(guids)
