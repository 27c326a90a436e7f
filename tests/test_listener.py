"""SlaposListener with injected fakes: no supervisord, no master."""
import io
import json
import xmlrpc.client

import pytest

from supervisor_slapos.syncstate import read_sync_state
from tests.listener_fakes import (
    INVALID_NAME, FakeClock, FakeMaster, FakeRPC, FakeSlapos,
    FixedRandom, bad_answer, down, instance, running)

TICK = {'ver': '3.0', 'eventname': 'TICK_60', 'len': '15'}
RUNNING_EVENT = {'ver': '3.0', 'eventname': 'SUPERVISOR_STATE_CHANGE_RUNNING',
                 'len': '0'}


def _getTargetClass():
    from supervisor_slapos.listener import SlaposListener
    return SlaposListener


class Harness:
    """A listener and its fakes, sharing one state directory."""

    def __init__(self, tmp_path, partitions=None, dirs=None,
                 instances=(), master=True, fraction=1.0, stdin=''):
        self.state_dir = tmp_path / 'state'
        self.state_dir.mkdir(exist_ok=True)
        self.slapos = FakeSlapos(self.state_dir, partitions, dirs)
        self.master = FakeMaster(instances) if master else None
        self.clock = FakeClock()
        self.random = FixedRandom(fraction)
        self.stdin = io.StringIO(stdin)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.sleeps = []
        self.listener = None

    def make(self, **kwargs):
        kwargs.setdefault('computer_json', None)
        self.listener = _getTargetClass()(
            FakeRPC(self.slapos), master=self.master, state_dir=None,
            stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,
            clock=self.clock, rng=self.random, sleep=self.sleeps.append,
            **kwargs)
        return self.listener

    def start(self, **kwargs):
        listener = self.make(**kwargs)
        listener.start()
        return listener

    def sync_state(self):
        return read_sync_state(str(self.state_dir))

    def reported_file(self):
        return json.loads((self.state_dir / 'reported-states.json')
                          .read_text())

    def log(self):
        return self.stderr.getvalue()


@pytest.fixture
def make(tmp_path):
    def factory(**kwargs):
        return Harness(tmp_path, **kwargs)
    return factory


# start: offline fallback

def test_start_without_master_starts_all_partitions(make):
    h = make(master=False)
    h.start()
    assert h.slapos.actions() == [('startAllPartitions',)]
    state = h.sync_state()
    assert (state.mode, state.master_url, state.last_attempt,
            state.last_error) == ('offline', '', 0.0, '')


def test_start_asks_supervisord_for_the_state_dir(make):
    h = make(master=False)
    listener = h.start()
    assert listener.state_dir == str(h.state_dir)
    assert h.slapos.calls[0] == ('getStateDir',)


def test_start_waits_for_supervisord_to_tell_the_state_dir(make):
    h = make(master=False)
    h.slapos.fail['getStateDir'] = ConnectionRefusedError()
    listener = h.make()
    original = h.sleeps.append

    def sleep(seconds):
        original(seconds)
        if len(h.sleeps) == 3:
            del h.slapos.fail['getStateDir']
    listener.sleep = sleep
    listener.start()
    assert len(h.sleeps) == 3
    assert h.slapos.actions() == [('startAllPartitions',)]


def test_start_gives_up_when_supervisord_never_tells_the_state_dir(make):
    h = make(master=False)
    h.slapos.fail['getStateDir'] = xmlrpc.client.Fault(1, 'UNKNOWN_METHOD')
    with pytest.raises(SystemExit):
        h.start()
    assert 'getStateDir() failed: UNKNOWN_METHOD' in h.log()


@pytest.mark.parametrize('error', [down(), bad_answer()])
def test_start_with_master_failing_starts_all_at_once(make, error):
    h = make()
    h.master.error = error
    h.start()
    assert h.slapos.actions() == [('startAllPartitions',)]
    # no retry before falling back
    assert h.master.calls == [('list', False)]
    state = h.sync_state()
    assert state.mode == 'offline'
    assert state.master_url == 'http://master.invalid'
    assert state.last_attempt == h.clock.now
    assert state.last_success == 0.0
    assert str(error) in state.last_error


def test_start_all_failure_does_not_kill_the_listener(make):
    h = make()
    h.master.error = down()
    h.slapos.fail['startAllPartitions'] = ConnectionRefusedError('gone')
    h.start()
    assert 'startAllPartitions failed' in h.log()


def test_start_all_logs_processes_that_failed(make):
    h = make(master=False)
    h.slapos.startAllPartitions = lambda: [
        {'name': 'a', 'group': 'slappart0', 'status': 80,
         'description': 'OK'},
        {'name': 'b', 'group': 'slappart0', 'status': 50,
         'description': 'SPAWN_ERROR: b'}]
    h.start()
    assert '1 processes started, 1 failed' in h.log()
    assert 'slappart0:b: SPAWN_ERROR: b' in h.log()


def test_start_with_master_answering_syncs_then_starts_all(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started')])
    h.start()
    # the sync first, then the managers' groups, as an offline start would
    assert h.slapos.actions() == [('startPartition', 'slappart0'),
                                  ('startAllPartitions',)]
    state = h.sync_state()
    assert (state.mode, state.last_error) == ('online', '')
    assert state.last_success == h.clock.now


def test_start_keeps_the_previous_last_success(make):
    h = make()
    h.start()
    success = h.clock.now
    h.clock.advance(100)
    h.master.error = down()
    h.start()
    assert h.sync_state().last_success == success


# sync

def test_sync_applies_each_requested_state(make):
    h = make(partitions={'slappart1': running('slappart1'),
                         'slappart2': {'files': ['slappart2-x.conf']},
                         'slappart0': {}},
             instances=[instance('slappart0', 'started'),
                        instance('slappart1', 'stopped'),
                        instance('slappart2', 'destroyed')])
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0'),
                                  ('stopPartition', 'slappart1'),
                                  ('destroyPartition', 'slappart2')]
    assert h.master.reports() == [('guid-slappart0', 'started'),
                                  ('guid-slappart1', 'stopped')]
    assert h.reported_file() == {'guid-slappart0': 'started',
                                 'guid-slappart1': 'stopped'}


def test_sync_does_not_restart_a_running_partition(make):
    h = make(partitions={'slappart0': running('slappart0', ('a', 'b'))},
             instances=[instance('slappart0', 'started')])
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == [('guid-slappart0', 'started')]


@pytest.mark.parametrize('statename', ['EXITED', 'FATAL', 'STOPPED',
                                       'BACKOFF'])
def test_sync_starts_a_started_partition_not_all_running(make, statename):
    part = running('slappart0', ('a', 'b'))
    part['processes'][1]['statename'] = statename
    h = make(partitions={'slappart0': part},
             instances=[instance('slappart0', 'started')])
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]


def test_sync_ignores_manager_processes_for_running_check(make):
    part = running('slappart0')
    part['processes'].append({'name': 'm', 'group': 'slappart0-mgr',
                              'statename': 'STOPPED', 'pid': 0})
    h = make(partitions={'slappart0': part},
             instances=[instance('slappart0', 'started')])
    h.start()
    assert h.slapos.sync_actions() == []


def test_sync_does_not_stop_a_stopped_partition(make):
    h = make(partitions={'slappart0': {'files': ['slappart0-mgr.conf']}},
             instances=[instance('slappart0', 'stopped')])
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
    h = make(partitions={'slappart0': running('slappart0'),
                         'slappart9': running('slappart9')},
             instances=[instance('slappart0', 'stopped')])
    h.start()
    touched = {c[1] for c in h.slapos.calls if len(c) > 1}
    assert touched == {'slappart0'}


def test_sync_reports_once_per_change(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started')])
    listener = h.start()
    listener.handle_event(TICK, '')
    listener.handle_event(TICK, '')
    assert h.master.reports() == [('guid-slappart0', 'started')]
    h.master.instances = [instance('slappart0', 'stopped')]
    listener.handle_event(TICK, '')
    listener.handle_event(TICK, '')
    assert h.master.reports() == [('guid-slappart0', 'started'),
                                  ('guid-slappart0', 'stopped')]


def test_reported_states_survive_a_listener_restart(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started')])
    h.start()
    h.start()  # a new listener process, same state_dir
    assert h.master.reports() == [('guid-slappart0', 'started')]


def test_corrupt_reported_states_file_starts_afresh(make):
    h = make(partitions={'slappart0': running('slappart0')},
             instances=[instance('slappart0', 'started')])
    (h.state_dir / 'reported-states.json').write_text('{"guid-sl')
    h.start()
    assert 'ignoring unreadable' in h.log()
    assert h.master.reports() == [('guid-slappart0', 'started')]
    assert h.reported_file() == {'guid-slappart0': 'started'}


@pytest.mark.parametrize('content', ['[]', '{"g": "destroyed", "h": 3}'])
def test_malformed_reported_states_are_dropped(make, content):
    h = make(master=False)
    (h.state_dir / 'reported-states.json').write_text(content)
    assert h.start().reported == {}


def test_failed_report_is_sent_on_the_next_sync(make):
    h = make(partitions={'slappart0': {}, 'slappart1': {}},
             instances=[instance('slappart0', 'started'),
                        instance('slappart1', 'started')])
    h.master.report_errors['guid-slappart0'] = bad_answer('HTTP 403')
    listener = h.start()
    assert h.master.reports() == [('guid-slappart0', 'started'),
                                  ('guid-slappart1', 'started')]
    assert 'reporting guid-slappart0 started: HTTP 403' \
        in h.sync_state().last_error
    assert h.sync_state().mode == 'online'
    del h.master.report_errors['guid-slappart0']
    listener.handle_event(TICK, '')
    assert h.master.reports()[2:] == [('guid-slappart0', 'started')]
    assert h.sync_state().last_error == ''


def test_unreachable_master_postpones_the_other_reports(make):
    h = make(partitions={'slappart0': {}, 'slappart1': {}},
             instances=[instance('slappart0', 'started'),
                        instance('slappart1', 'started')])
    h.master.report_errors['guid-slappart0'] = down('timed out')
    listener = h.start()
    # the second partition is still started, its report waits
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0'),
                                  ('startPartition', 'slappart1')]
    assert h.master.reports() == [('guid-slappart0', 'started')]
    h.master.report_errors.clear()
    listener.handle_event(TICK, '')
    assert h.master.reports()[1:] == [('guid-slappart0', 'started'),
                                      ('guid-slappart1', 'started')]


def test_destroy_forgets_the_reported_state(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started')])
    listener = h.start()
    h.master.instances = [instance('slappart0', 'destroyed')]
    listener.handle_event(TICK, '')
    assert h.reported_file() == {}
    # the same instance started again is reported again
    h.master.instances = [instance('slappart0', 'started')]
    listener.handle_event(TICK, '')
    assert h.master.reports() == [('guid-slappart0', 'started')] * 2


def test_instances_no_longer_listed_are_forgotten(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started')])
    listener = h.start()
    h.master.instances = []
    listener.handle_event(TICK, '')
    assert h.reported_file() == {}


@pytest.mark.parametrize('pid', ['../x', '', 'slap_part', 'a' * 65,
                                 'slappart0.conf', 'x y'])
def test_invalid_partition_id_is_skipped(make, pid):
    h = make(partitions={'slappart0': {}},
             instances=[instance(pid, 'destroyed', guid='bad'),
                        instance('slappart0', 'started')])
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]
    assert all(c[1] != pid for c in h.slapos.calls if len(c) > 1)
    assert 'invalid partition id' in h.sync_state().last_error
    assert h.master.reports() == [('guid-slappart0', 'started')]


def test_one_partition_error_does_not_stop_the_others(make):
    h = make(partitions={'slappart1': {}, 'slappart2': {}},
             dirs={'slappart2'},  # slappart1 has no directory here
             instances=[instance('slappart1', 'started'),
                        instance('slappart2', 'started')])
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart1'),
                                  ('startPartition', 'slappart2')]
    assert h.master.reports() == [('guid-slappart2', 'started')]
    state = h.sync_state()
    assert state.mode == 'online'
    assert 'slappart1: started failed: NO_PARTITION' in state.last_error


def test_fault_from_plugin_on_invalid_name_is_logged(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started')])
    h.slapos.fail[('startPartition', 'slappart0')] = xmlrpc.client.Fault(
        INVALID_NAME, 'INVALID_NAME: slappart0')
    h.start()
    assert 'slappart0: started failed: INVALID_NAME' in h.log()


def test_sync_reads_all_partitions_in_one_call(make):
    pids = [f'slappart{n}' for n in range(5)]
    h = make(partitions={p: running(p) for p in pids},
             instances=[instance(p, 'started') for p in pids])
    h.start()
    assert h.slapos.calls == [('getStateDir',), ('getAllPartitionInfo',),
                              ('startAllPartitions',)]


def test_supervisord_going_away_interrupts_the_sync(make):
    h = make(partitions={'slappart0': {}, 'slappart1': {}},
             instances=[instance('slappart0', 'started'),
                        instance('slappart1', 'started')])
    h.slapos.fail['startPartition'] = ConnectionRefusedError(111, 'refused')
    listener = h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]
    assert 'sync interrupted' in h.sync_state().last_error
    # and it is still alive and serving
    del h.slapos.fail['startPartition']
    listener.handle_event(TICK, '')
    assert h.master.reports() == [('guid-slappart0', 'started'),
                                  ('guid-slappart1', 'started')]


def test_supervisord_not_answering_skips_the_sync(make):
    h = make(partitions={'slappart0': running('slappart0')},
             instances=[instance('slappart0', 'started')])
    h.slapos.fail['getAllPartitionInfo'] = xmlrpc.client.Fault(
        6, 'SHUTDOWN_STATE')
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == []
    state = h.sync_state()
    assert state.mode == 'online'
    assert 'getAllPartitionInfo failed: SHUTDOWN_STATE' in state.last_error


@pytest.mark.parametrize('answer', [
    None, 'x', 42, {}, [None, 'x', {'partition_id': 3}],
    [{'partition_id': 'slappart0', 'state': 'started', 'processes': 'x'}],
    [{'partition_id': 'slappart0', 'state': 'started',
      'processes': ['x', None]}],
])
def test_garbage_partition_info_is_survived(make, answer):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started')])
    h.slapos.getAllPartitionInfo = lambda: answer
    h.start()
    assert h.slapos.sync_actions() in ([('startPartition', 'slappart0')], [])
    assert 'unexpected error' not in h.log()
    assert h.master.reports() == [('guid-slappart0', 'started')]


def test_conflicting_duplicates_leave_the_partition_alone(make):
    h = make(partitions={'slappart0': running('slappart0')},
             instances=[instance('slappart0', 'started', guid='g1'),
                        instance('slappart0', 'destroyed', guid='g2')])
    h.start()
    assert h.slapos.sync_actions() == []
    assert h.master.reports() == []
    assert 'conflicting states destroyed/started' in h.sync_state().last_error


def test_agreeing_duplicates_are_applied_once_and_each_reported(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started', guid='g1'),
                        instance('slappart0', 'started', guid='g2')])
    h.start()
    assert h.slapos.sync_actions() == [('startPartition', 'slappart0')]
    assert h.master.reports() == [('g1', 'started'), ('g2', 'started')]


def test_sync_order_is_deterministic(make):
    pids = ['slappart10', 'slappart2', 'slappart1']
    h = make(partitions={p: {} for p in pids},
             instances=[instance(p, 'started') for p in pids])
    h.start()
    assert [c[1] for c in h.slapos.sync_actions()] == sorted(pids)


# ticks and backoff

def test_tick_syncs_while_online(make):
    h = make()
    listener = h.start()
    listener.handle_event(TICK, 'when:1000000 ')
    listener.handle_event(TICK, 'when:1000060 ')
    assert h.master.calls == [('list', False), ('list', True),
                              ('list', True)]


def test_tick_while_offline_backs_off_exponentially(make):
    h = make(fraction=1.0)
    h.master.error = down()
    listener = h.start()
    attempts = []
    for minute in range(1, 32):
        h.clock.now = 1_000_000.0 + 60 * minute
        before = len(h.master.calls)
        listener.handle_event(TICK, '')
        if len(h.master.calls) > before:
            attempts.append(minute)
    # delays of 1, 2, 4, 8 and then 15 minutes (the cap)
    assert attempts == [1, 3, 7, 15, 30]
    assert h.slapos.actions() == [('startAllPartitions',)]


def test_backoff_is_jittered(make):
    h = make(fraction=0.0)  # half of each delay
    h.master.error = down()
    listener = h.start()
    assert listener.next_attempt == h.clock.now + 30
    h.clock.advance(30)
    listener.handle_event(TICK, '')
    assert listener.next_attempt == h.clock.now + 60


def test_backoff_resets_when_the_master_answers(make):
    h = make()
    h.master.error = down()
    listener = h.start()
    h.clock.advance(60)
    listener.handle_event(TICK, '')
    assert listener.failures == 2
    h.master.error = None
    h.clock.advance(120)
    listener.handle_event(TICK, '')
    assert (listener.failures, listener.next_attempt) == (0, 0.0)
    assert h.sync_state().mode == 'online'
    assert 'master answers again' in h.log()


def test_tick_attempts_may_retry_requests(make):
    h = make()
    h.master.error = down()
    listener = h.start()
    h.clock.advance(60)
    listener.handle_event(TICK, '')
    assert h.master.calls == [('list', False), ('list', True)]


def test_master_back_turns_offline_into_online(make):
    h = make(partitions={'slappart0': running('slappart0')},
             instances=[instance('slappart0', 'started')])
    h.master.error = down()
    listener = h.start()
    assert h.sync_state().mode == 'offline'
    h.master.error = None
    h.clock.advance(60)
    listener.handle_event(TICK, '')
    state = h.sync_state()
    assert (state.mode, state.last_error) == ('online', '')
    assert h.master.reports() == [('guid-slappart0', 'started')]


# SUPERVISOR_STATE_CHANGE_RUNNING

def test_running_right_after_start_is_not_a_second_attempt(make):
    h = make()
    listener = h.start()
    h.clock.advance(5)
    listener.handle_event(RUNNING_EVENT, '')
    assert h.master.calls == [('list', False)]


def test_running_later_is_an_attempt_with_fallback(make):
    h = make()
    listener = h.start()
    h.master.error = down()
    h.clock.advance(3600)
    listener.handle_event(RUNNING_EVENT, '')
    assert h.master.calls == [('list', False), ('list', False)]
    # once at the start (online), once at the later RUNNING (offline)
    assert h.slapos.actions() == [('startAllPartitions',),
                                  ('startAllPartitions',)]


def test_tick_online_syncs_without_starting_all(make):
    h = make(partitions={'slappart0': running('slappart0')},
             instances=[instance('slappart0', 'started')])
    listener = h.start()
    h.slapos.calls.clear()
    h.clock.advance(60)
    listener.handle_event(TICK, 'when:1234567')
    assert h.slapos.actions() == []


def test_remote_sync_request_ignores_the_backoff(make):
    h = make()
    h.master.error = down()
    listener = h.start()
    h.master.error = None
    listener.handle_event({'eventname': 'REMOTE_COMMUNICATION'},
                          'type:slapos-sync\n')
    assert h.sync_state().mode == 'online'
    listener.handle_event({'eventname': 'REMOTE_COMMUNICATION'},
                          'type:other\nslapos-sync')
    assert len(h.master.calls) == 2


@pytest.mark.parametrize('headers', [{}, {'eventname': 'PROCESS_STATE'},
                                     {'eventname': 'TICK'}])
def test_other_events_are_ignored_quietly(make, headers):
    h = make()
    listener = h.start()
    listener.handle_event(headers, 'garbage')
    assert 'ERROR' not in h.log()


# the protocol loop

def event(name, payload=''):
    return (f'ver:3.0 server:supervisor serial:1 pool:slapos poolserial:1 '
            f'eventname:{name} len:{len(payload)}\n{payload}')


def test_runforever_answers_ok(make):
    h = make(master=False, stdin=event('TICK_60', 'when:1000060 '))
    listener = h.start()
    listener.runforever(test=True)
    assert h.stdout.getvalue() == 'READY\nRESULT 2\nOK'


def test_runforever_serves_events_until_eof(make):
    h = make(stdin=event('TICK_60', 'when:1 ') * 3)
    listener = h.start()
    listener.runforever()
    assert h.stdout.getvalue() == 'READY\nRESULT 2\nOK' * 3 + 'READY\n'
    assert h.master.calls == [('list', False)] + [('list', True)] * 3
    assert 'stdin closed' in h.log()


def test_run_starts_then_serves(make):
    h = make(master=False, stdin=event('TICK_60', 'when:1 '))
    h.make().run()
    assert h.slapos.actions() == [('startAllPartitions',)]
    assert h.stdout.getvalue() == 'READY\nRESULT 2\nOK' + 'READY\n'


@pytest.mark.parametrize('line', ['garbage\n', 'eventname:TICK_60 len:x\n',
                                  'eventname:TICK_60 len:-4\n'])
def test_bad_event_header_is_answered_ok(make, line):
    h = make(master=False, stdin=line)
    listener = h.start()
    listener.runforever(test=True)
    assert h.stdout.getvalue() == 'READY\nRESULT 2\nOK'
    assert 'bad event header' in h.log()


def test_header_values_may_contain_colons(make):
    h = make(stdin='ver:3.0 server:a:b eventname:TICK_60 len:7\nwhen:1 ')
    listener = h.start()
    listener.runforever(test=True)
    assert h.master.calls == [('list', False), ('list', True)]


def test_unexpected_error_while_handling_is_answered_ok(make):
    h = make(stdin=event('TICK_60', 'when:1 '))
    listener = h.start()
    h.master.list_instances = None  # TypeError when called
    listener.runforever(test=True)
    assert h.stdout.getvalue() == 'READY\nRESULT 2\nOK'
    assert 'unexpected error (the listener goes on)' in h.log()


def test_stdout_carries_only_the_protocol(make):
    h = make(partitions={'slappart0': {}},
             instances=[instance('slappart0', 'started'),
                        instance('../x', 'started')],
             stdin=event('TICK_60', 'when:1 ') * 2)
    h.master.report_errors['guid-slappart0'] = bad_answer()
    listener = h.start()
    listener.runforever()
    assert h.stdout.getvalue() == ('READY\nRESULT 2\nOK' * 2) + 'READY\n'
    assert h.log()


def test_sync_state_write_failure_is_logged(make, tmp_path):
    h = make(master=False)
    listener = h.make()
    listener.state_dir = str(tmp_path / 'missing' / 'dir')
    listener.start()
    assert 'cannot write the sync state' in h.log()


# command line

def test_listener_from_args_without_master():
    from supervisor_slapos.listener import listener_from_args
    listener = listener_from_args([], rpc='rpc')
    assert (listener.rpc, listener.master) == ('rpc', None)


def test_listener_from_args_builds_the_master_client():
    from supervisor_slapos.listener import listener_from_args
    listener = listener_from_args([
        '--master-url', 'https://master.example/api/',
        '--computer-id', 'COMP-1', '--cert-file', 'c.pem',
        '--key-file', 'k.pem', '--ca-file', 'ca.pem', '--timeout', '4.5',
        '--computer-json', '/etc/opt/slapos/slapos.json'])
    master = listener.master
    assert master.url == 'https://master.example/api'
    assert master.computer_id == 'COMP-1'
    assert master.timeout == 4.5
    assert master._session.cert == ('c.pem', 'k.pem')
    assert master.verify == 'ca.pem'
    assert listener.computer_json == '/etc/opt/slapos/slapos.json'


def test_parse_args_defaults():
    from supervisor_slapos.listener import ListenerConfig, parse_args
    assert parse_args([]) == ListenerConfig(
        master_url=None, computer_id=None, cert_file=None, key_file=None,
        ca_file=None, timeout=10.0, computer_json=None)


@pytest.mark.parametrize('argv', [
    ['--master-url', 'http://m'],
    ['--master-url', 'ftp://m', '--computer-id', 'C'],
    ['--master-url', 'm', '--computer-id', 'C'],
    ['--key-file', 'k'],
    ['--timeout', '0'], ['--timeout', '-1'], ['--timeout', 'x'],
    ['--timeout', 'inf'], ['--timeout', 'nan'],
    ['--unknown'],
])
def test_parse_args_refuses(argv, capsys):
    from supervisor_slapos.listener import parse_args
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert capsys.readouterr().out == ''


def test_main_needs_supervisor(monkeypatch, capsys):
    from supervisor_slapos.listener import main
    monkeypatch.delenv('SUPERVISOR_SERVER_URL', raising=False)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert 'SUPERVISOR_SERVER_URL' in err


def test_logs_never_show_credentials(make):
    from supervisor_slapos.listener import listener_from_args
    h = make()
    listener = listener_from_args(
        ['--master-url', 'http://user:s3cret@127.0.0.1:9/',
         '--computer-id', 'COMP-1', '--timeout', '0.5'],
        rpc=FakeRPC(h.slapos), stdout=h.stdout, stderr=h.stderr,
        clock=h.clock, rng=h.random)
    listener.start()
    state = h.sync_state()
    assert state.master_url == 'http://127.0.0.1:9'
    assert 's3cret' not in h.log() + state.last_error
    assert h.slapos.actions() == [('startAllPartitions',)]


class ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, 'Broken pipe')


def test_runforever_exits_quietly_when_supervisord_is_gone(make):
    h = make(master=False, stdin=event('TICK_60', 'when:1 '))
    listener = h.start()
    listener.stdout = ClosedPipe()
    listener.runforever()
    assert 'supervisord went away' in h.log()


# --cfg, --slapgrid, --help

SLAPOS_CFG = """\
[slapos]
master_url = https://master.example/api
computer_id = COMP-CFG
cert_file = /etc/opt/slapos/ssl/computer.crt
key_file = /etc/opt/slapos/ssl/computer.key

[slapformat]
computer_json = /etc/opt/slapos/slapos.json
"""


def test_cfg_gives_the_master_and_the_format_dump(tmp_path):
    from supervisor_slapos.listener import parse_args
    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text(SLAPOS_CFG)
    config = parse_args(['--cfg', str(cfg)])
    assert (config.master_url, config.computer_id, config.cert_file,
            config.key_file, config.computer_json) == (
        'https://master.example/api', 'COMP-CFG',
        '/etc/opt/slapos/ssl/computer.crt',
        '/etc/opt/slapos/ssl/computer.key', '/etc/opt/slapos/slapos.json')


def test_command_line_options_win_over_cfg(tmp_path):
    from supervisor_slapos.listener import parse_args
    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text(SLAPOS_CFG)
    config = parse_args(['--cfg', str(cfg), '--computer-id', 'COMP-ARG',
                         '--master-url', 'http://127.0.0.1:1'])
    assert (config.master_url, config.computer_id) == (
        'http://127.0.0.1:1', 'COMP-ARG')
    assert config.cert_file == '/etc/opt/slapos/ssl/computer.crt'


@pytest.mark.parametrize('content', [None, '[slapos\nx', b'\xff\xfe'])
def test_unreadable_cfg_is_a_command_line_error(tmp_path, capsys, content):
    from supervisor_slapos.listener import parse_args
    cfg = tmp_path / 'slapos.cfg'
    if isinstance(content, bytes):
        cfg.write_bytes(content)
    elif content is not None:
        cfg.write_text(content)
    with pytest.raises(SystemExit) as info:
        parse_args(['--cfg', str(cfg)])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ''
    assert '--cfg: ' in err and str(cfg) in err


def test_help_works_outside_supervisord():
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('SUPERVISOR_')}
    result = subprocess.run(
        [sys.executable, '-m', 'supervisor_slapos.listener', '--help'],
        capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('usage: supervisor-slapos-listener')
    for option in ('--cfg', '--slapgrid', '--master-url'):
        assert option in result.stdout


def test_slapgrid_mode_starts_all_and_never_asks_for_instances(make):
    h = make(partitions={'slappart0': running('slappart0', statename='EXITED'),
                         'slappart1': {}},
             instances=[instance('slappart0', 'destroyed'),
                        instance('slappart1', 'started')])
    listener = h.start(slapgrid=True)
    h.clock.advance(60)
    listener.handle_event(TICK, '')
    listener.handle_event({'eventname': 'REMOTE_COMMUNICATION'},
                          'type:slapos-sync\n')
    assert h.slapos.actions() == [('startAllPartitions',)]
    assert h.master.calls == []
    assert h.sync_state().mode == 'unknown'  # no contact with the master
