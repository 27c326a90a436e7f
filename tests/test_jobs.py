import pytest
from supervisor.http import NOT_DONE_YET
from supervisor.tests.base import DummyLogger
from supervisor.xmlrpc import RPCError

from supervisor_slapos.faults import Faults
from supervisor_slapos.jobs import (
    COMMITTED,
    Job,
    JobQueue,
    poll_callbacks,
    time_sliced,
)


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
    job = Job(steps(log, gate), 'test')
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

    job = Job(raising(), 'test')
    assert job.advance() is True
    with pytest.raises(RPCError) as info:
        job.outcome()
    assert info.value.code == 304


def test_queue_runs_jobs_of_one_key_in_order():
    queue, log = JobQueue(DummyLogger()), []
    first_gate, second_gate = Gate(), Gate()
    first = queue.submit('p', steps(log, first_gate, 'first'), 'first')
    second = queue.submit('p', steps(log, second_gate, 'second'), 'second')
    assert log == ['start'] and queue.busy('p')
    second_gate.open = True
    queue.advance_all()
    assert not first.done and not second.done
    first_gate.open = True
    queue.advance_all()
    assert first.outcome() == 'first' and second.outcome() == 'second'
    assert not queue.busy('p')


def test_queue_runs_other_keys_independently():
    queue, log = JobQueue(DummyLogger()), []
    blocked = queue.submit('p', steps(log, Gate()), 'p')
    free = queue.submit('q', steps(log, Gate()), 'q')
    assert not blocked.done and not free.done
    assert log == ['start', 'start']


def test_deferred_returns_not_done_yet_then_result():
    queue, gate = JobQueue(DummyLogger()), Gate()
    job = queue.submit('p', steps([], gate), 'p')
    deferred = queue.deferred('p', job, True)
    assert deferred.delay == 0  # polled at every turn of supervisord's loop
    assert deferred() is NOT_DONE_YET
    gate.open = True
    assert deferred() == 'done'


def failing(error, gate=None):
    if gate is not None:
        yield gate
    raise error


def test_job_error_of_any_kind_ends_the_job_and_never_escapes():
    job = Job(failing(ValueError('boom')), 'test')
    assert job.advance() is True
    with pytest.raises(RPCError) as info:
        job.outcome()
    assert info.value.code == 30 and 'ValueError: boom' in info.value.text


def test_filesystem_error_is_a_file_error_fault_naming_it():
    error = OSError(28, 'No space left on device')
    error.filename = '/x/P.conf'
    job = Job(failing(error), 'test')
    job.advance()
    with pytest.raises(RPCError) as info:
        job.outcome()
    assert info.value.code == Faults.FILE_ERROR
    assert info.value.text == 'FILE_ERROR: No space left on device (/x/P.conf)'


def test_queued_failure_reaches_its_own_caller_only():
    logger = DummyLogger()
    queue, gate = JobQueue(logger), Gate()
    first = queue.submit('p', steps([], gate, 'first'), 'first')
    second = queue.submit(
        'p', failing(OSError(30, 'Read-only file system')), 'second'
    )
    gate.open = True
    assert queue.answer('p', first, wait=True) == 'first'
    with pytest.raises(RPCError) as info:
        queue.answer('p', second, wait=True)
    assert info.value.code == Faults.FILE_ERROR
    assert any('second failed' in m for m in logger.data)


def test_uncollected_failure_is_the_keys_last_error_until_a_success():
    logger = DummyLogger()
    queue, gate = JobQueue(logger), Gate()

    def commit_then_fail():
        yield COMMITTED
        yield gate
        raise RuntimeError('late')

    job = queue.submit('p', commit_then_fail(), 'stop')
    assert queue.answer('p', job, wait=False) is True  # answered early
    gate.open = True
    queue.advance_all()  # as on a TICK: nothing raises
    assert 'RuntimeError: late' in queue.last_error('p')
    assert any('Traceback' in m for m in logger.data)
    done = Gate()
    done.open = True
    queue.submit('p', steps([], done), 'next')
    assert queue.last_error('p') == ''


def test_job_that_waits_answers_only_once_committed_without_wait():
    queue, first_gate = JobQueue(DummyLogger()), Gate()
    queue.submit('p', steps([], first_gate), 'first')

    def commit_then_wait():
        yield COMMITTED
        yield Gate()

    queued = queue.submit('p', commit_then_wait(), 'queued')
    assert queue.answer('p', queued, wait=False) is NOT_DONE_YET
    first_gate.open = True
    assert queue.answer('p', queued, wait=False) is True
    assert queue.answer('p', queued, wait=True) is NOT_DONE_YET


def test_poll_callbacks_collects_failures_once_all_ended():
    state = {'calls': 0}

    def slow():
        state['calls'] += 1
        return True if state['calls'] > 1 else NOT_DONE_YET

    def broken():
        raise RPCError(50, 'g:p')

    poll = poll_callbacks({'ok': lambda: True, 'slow': slow, 'broken': broken})
    assert poll() is NOT_DONE_YET
    failures = poll()
    assert list(failures) == ['broken']
    assert (failures['broken'].code, failures['broken'].text) == (
        50,
        'SPAWN_ERROR: g:p',
    )


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
    poll = time_sliced(
        range(3), done.append, budget=60.0, interrupted=lambda: True
    )
    assert poll() is NOT_DONE_YET and done == [0]
    assert poll() is NOT_DONE_YET and done == [0, 1]
    assert poll() is NOT_DONE_YET and done == [0, 1, 2]
    assert poll() == [None, None, None]
