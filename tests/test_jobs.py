import pytest
from supervisor.http import NOT_DONE_YET
from supervisor.xmlrpc import RPCError

from supervisor_slapos.jobs import (Job, JobQueue, poll_callbacks,
                                    time_sliced)


class Gate:
    """A poll function that is done once opened."""

    def __init__(self, value='opened'):
        self.open = False
        self.value = value

    def __call__(self):
        return self.value if self.open else NOT_DONE_YET


def steps(log, gate, result='done'):
    log.append('start')
    value = yield gate
    log.append(value)
    return result


def test_job_runs_until_it_must_wait_then_finishes():
    log, gate = [], Gate()
    job = Job(steps(log, gate))
    assert job.advance() is False
    assert log == ['start'] and not job.done
    gate.open = True
    assert job.advance() is True
    assert log == ['start', 'opened']
    assert job.outcome() == 'done'


def test_job_keeps_rpc_error_for_its_outcome():
    def raising():
        raise RPCError(304, 'boom')
        yield
    job = Job(raising())
    assert job.advance() is True
    with pytest.raises(RPCError) as info:
        job.outcome()
    assert info.value.code == 304


def test_queue_runs_jobs_of_one_key_in_order():
    queue, log = JobQueue(), []
    first_gate, second_gate = Gate(), Gate()
    first = queue.submit('p', steps(log, first_gate, 'first'))
    second = queue.submit('p', steps(log, second_gate, 'second'))
    assert log == ['start'] and queue.pending('p')
    second_gate.open = True
    queue.advance_all()
    assert not first.done and not second.done
    first_gate.open = True
    queue.advance_all()
    assert first.outcome() == 'first' and second.outcome() == 'second'
    assert not queue.pending('p')


def test_queue_runs_other_keys_independently():
    queue, log = JobQueue(), []
    blocked = queue.submit('p', steps(log, Gate()))
    free = queue.submit('q', steps(log, Gate()))
    assert not blocked.done and not free.done
    assert log == ['start', 'start']


def test_deferred_returns_not_done_yet_then_result():
    queue, gate = JobQueue(), Gate()
    job = queue.submit('p', steps([], gate))
    deferred = queue.deferred('p', job, rpcinterface=object())
    assert deferred.delay == 0  # polled at every turn of supervisord's loop
    assert deferred() is NOT_DONE_YET
    gate.open = True
    assert deferred() == 'done'


def test_poll_callbacks_collects_failures_once_all_ended():
    state = {'calls': 0}

    def slow():
        state['calls'] += 1
        return True if state['calls'] > 1 else NOT_DONE_YET

    def broken():
        raise RPCError(50, 'g:p')
    poll = poll_callbacks({'ok': lambda: True, 'slow': slow,
                           'broken': broken})
    assert poll() is NOT_DONE_YET
    assert poll() == {'broken': 'SPAWN_ERROR: g:p'}


def test_time_sliced_spreads_work_over_polls():
    now = {'t': 0.0}

    def clock():
        return now['t']

    def action(item):
        now['t'] += 1.0
        return item * 2
    poll = time_sliced(range(5), action, budget=2.0, clock=clock)
    assert poll() is NOT_DONE_YET
    assert poll() is NOT_DONE_YET
    assert poll() == [0, 2, 4, 6, 8]


def test_time_sliced_ends_a_slice_when_interrupted_after_one_item():
    done = []
    poll = time_sliced(range(3), done.append, budget=60.0,
                       interrupted=lambda: True)
    assert poll() is NOT_DONE_YET and done == [0]
    assert poll() is NOT_DONE_YET and done == [0, 1]
    assert poll() is NOT_DONE_YET and done == [0, 1, 2]
    assert poll() == [None, None, None]
