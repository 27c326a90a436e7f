"""Operations that take several turns of supervisord's main loop.

Stopping a process takes time, and supervisord is single-threaded: an RPC
method must not wait. An operation is written as a generator that yields a
*poll* function whenever it has to wait; the poll returns ``NOT_DONE_YET``
until the wait is over, then the value sent back into the generator.

A ``JobQueue`` runs the jobs of one key (a partition) one after the other.
Jobs advance when the RPC's deferred result is polled and, should the
client go away or not wait, on supervisord's TICK events: an operation
always runs to its end.
"""
import collections
import time

from supervisor.http import NOT_DONE_YET
from supervisor.xmlrpc import RPCError

# supervisord polls a deferred result whose delay is 0 at every turn of its
# loop, and one with a delay only when something else wakes the loop (its
# poll() otherwise sleeps up to 1 s): a job working in time slices would
# run one slice a second. 0 is what supervisor's own startProcess and
# stopProcess use: the loop turns as long as a client waits.
POLL_DELAY = 0


class Job:
    """One operation: a generator of poll functions."""

    def __init__(self, steps):
        self._steps = steps
        self._poll = None
        self.done = False
        self.result = None
        self.error = None

    def advance(self):
        """Run as far as possible; return True once the job has ended."""
        while not self.done:
            value = None
            if self._poll is not None:
                value = self._poll()
                if value is NOT_DONE_YET:
                    return False
            try:
                self._poll = self._steps.send(value)
            except StopIteration as stop:
                self._finish(result=stop.value)
            except RPCError as error:
                self._finish(error=error)
            except BaseException:
                self._finish(error=RPCError(0, 'internal error'))
                raise
        return True

    def _finish(self, result=None, error=None):
        self.done = True
        self.result = result
        self.error = error
        self._steps = self._poll = None

    def outcome(self):
        """The job's result, or raise its error."""
        if self.error is not None:
            raise self.error
        return self.result


class JobQueue:
    """Jobs by key; the jobs of one key run in order, one at a time."""

    def __init__(self):
        self._queues = {}

    def submit(self, key, steps):
        job = Job(steps)
        self._queues.setdefault(key, collections.deque()).append(job)
        self.advance(key)
        return job

    def advance(self, key):
        queue = self._queues.get(key)
        while queue:
            if not queue[0].advance():
                return
            queue.popleft()
        self._queues.pop(key, None)

    def advance_all(self, event=None):
        for key in list(self._queues):
            self.advance(key)

    def pending(self, key):
        return bool(self._queues.get(key))

    def deferred(self, key, job, rpcinterface):
        """A deferred result for supervisord: the job's outcome when done."""
        def wait_for_job():
            self.advance(key)
            if not job.done:
                return NOT_DONE_YET
            return job.outcome()
        wait_for_job.delay = POLL_DELAY
        wait_for_job.rpcinterface = rpcinterface
        return wait_for_job


def poll_callbacks(callbacks):
    """Poll supervisor's own deferred callbacks until each has ended.

    ``callbacks`` maps a name to a deferred callback (e.g. what
    ``startProcess(name, wait=True)`` returns). The poll returns
    ``{name: error text}`` for those that raised, once none is pending.
    """
    pending = dict(callbacks)
    failures = {}

    def poll():
        for name, callback in list(pending.items()):
            try:
                if callback() is NOT_DONE_YET:
                    continue
            except RPCError as error:
                failures[name] = error.text
            del pending[name]
        return NOT_DONE_YET if pending else failures
    return poll


def time_sliced(items, action, budget, clock=time.monotonic,
                interrupted=lambda: False):
    """Poll that calls ``action(item)`` for each item, ``budget`` seconds of
    work at a time, so supervisord's loop runs between slices. A slice also
    ends as soon as ``interrupted()`` is true (checked after each item, so
    that every slice makes progress). It returns the list of what
    ``action`` returned, once every item is done."""
    iterator = iter(items)
    results = []
    state = {'exhausted': False}

    def poll():
        deadline = clock() + budget
        while clock() < deadline:
            try:
                item = next(iterator)
            except StopIteration:
                state['exhausted'] = True
                break
            results.append(action(item))
            if interrupted():
                break
        return results if state['exhausted'] else NOT_DONE_YET
    return poll
