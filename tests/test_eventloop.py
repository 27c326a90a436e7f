"""supervisord's listener protocol and the wait for the listener's own
moments (eventloop.py), with StringIO streams and a fake wait."""

import io
import os

import pytest

from supervisor_slapos.eventloop import EventLoop, stdin_waiter
from supervisor_slapos.listener import make_logger
from testbed.listener_fakes import bad_answer, event_text, instance


class Handler:
    """Records what the loop asks; ``timeouts`` are the answers of
    seconds_until_due, in order (then None)."""

    def __init__(self, timeouts=()):
        self.timeouts = list(timeouts)
        self.calls = []

    def handle_event(self, headers, payload):
        self.calls.append(('event', headers.get('eventname'), payload))

    def seconds_until_due(self):
        return self.timeouts.pop(0) if self.timeouts else None

    def due(self):
        self.calls.append(('due',))


def make_loop(handler, stdin_text='', wait=None):
    stdin, stdout, stderr = (
        io.StringIO(stdin_text),
        io.StringIO(),
        io.StringIO(),
    )
    loop = EventLoop(handler, stdin, stdout, make_logger(stderr), wait=wait)
    return loop, stdout, stderr


# the protocol


def test_each_event_is_answered_ok():
    handler = Handler()
    loop, stdout, stderr = make_loop(
        handler, event_text('TICK_60', 'when:1 ') * 2
    )
    loop.run()
    assert stdout.getvalue() == 'READY\nRESULT 2\nOK' * 2 + 'READY\n'
    assert handler.calls == [('event', 'TICK_60', 'when:1 ')] * 2
    assert 'stdin closed' in stderr.getvalue()


@pytest.mark.parametrize(
    'line',
    ['garbage\n', 'eventname:TICK_60 len:x\n', 'eventname:TICK_60 len:-4\n'],
)
def test_bad_event_header_is_answered_ok(line):
    handler = Handler()
    loop, stdout, stderr = make_loop(handler, line)
    loop.run(test=True)
    assert stdout.getvalue() == 'READY\nRESULT 2\nOK'
    assert 'bad event header' in stderr.getvalue()
    assert handler.calls == [('event', None, '')]


def test_header_values_may_contain_colons():
    handler = Handler()
    loop, _, _ = make_loop(
        handler, 'ver:3.0 server:a:b eventname:TICK_60 len:7\nwhen:1 '
    )
    loop.run(test=True)
    assert handler.calls == [('event', 'TICK_60', 'when:1 ')]


def test_unexpected_error_while_handling_is_answered_ok():
    handler = Handler()
    handler.handle_event = None  # TypeError when called
    loop, stdout, stderr = make_loop(handler, event_text('TICK_60'))
    loop.run(test=True)
    assert stdout.getvalue() == 'READY\nRESULT 2\nOK'
    assert 'unexpected error (the listener goes on)' in stderr.getvalue()


class ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, 'Broken pipe')


def test_exits_quietly_when_supervisord_is_gone():
    loop, _, stderr = make_loop(Handler(), event_text('TICK_60'))
    loop.stdout = ClosedPipe()
    loop.run()
    assert 'supervisord went away' in stderr.getvalue()


# waiting for the handler's own moments


def test_own_work_runs_when_its_moment_passes_before_an_event():
    handler = Handler(timeouts=[12.5, -3.0, 40.0])
    waited = []

    def wait(timeout):
        waited.append(timeout)
        return len(waited) == 3  # two timeouts pass, then an event

    loop, stdout, _ = make_loop(handler, event_text('TICK_60'), wait=wait)
    loop.run(test=True)
    # a moment already past is waited for with 0: at once
    assert waited == [12.5, 0.0, 40.0]
    assert handler.calls == [('due',), ('due',), ('event', 'TICK_60', '')]
    # READY once: waiting is not an answer
    assert stdout.getvalue() == 'READY\nRESULT 2\nOK'


def test_no_work_of_its_own_waits_for_an_event_only():
    waited = []
    loop, _, _ = make_loop(
        Handler(),
        event_text('TICK_60'),
        wait=lambda t: waited.append(t) or True,
    )
    loop.run(test=True)
    assert waited == [None]


def test_stdin_waiter_on_a_pipe():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as stdin, os.fdopen(write_end, 'w') as out:
        wait = stdin_waiter(stdin)
        assert wait(0) is False
        out.write(event_text('TICK_60'))
        out.flush()
        assert wait(None) is True


def test_stdin_waiter_on_a_stream_without_descriptor():
    assert stdin_waiter(io.StringIO(''))(5) is True


# the listener in the loop


def test_listener_runs_starts_then_serves(make):
    h = make(master=False, stdin=event_text('TICK_60', 'when:1 '))
    h.make().run()
    assert h.slapos.actions() == [('startAllPartitions',)]
    assert h.stdout.getvalue() == 'READY\nRESULT 2\nOK' + 'READY\n'


def test_listener_asks_the_master_at_its_moment_between_events(make):
    h = make(stdin=event_text('TICK_60'))
    moments = []

    def wait(timeout):
        if timeout is None or len(moments) == 3:
            return True
        h.clock.advance(timeout)  # nothing came: the moment is there
        moments.append(h.clock.now)
        return False

    h.make(wait=wait).run()
    start = moments[0] - 60
    assert moments == [start + 60, start + 120, start + 180]
    assert h.master.lists() == 4  # the start, then each moment


def test_stdout_carries_only_the_protocol(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[
            instance('slappart0', 'started'),
            instance('../x', 'started'),
        ],
        stdin=event_text('TICK_60', 'when:1 ') * 2,
    )
    h.master.report_errors['guid-slappart0'] = bad_answer()
    h.make().run()
    assert h.stdout.getvalue() == ('READY\nRESULT 2\nOK' * 2) + 'READY\n'
    assert h.log()
