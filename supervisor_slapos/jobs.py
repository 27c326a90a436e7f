"""Operations that take several turns of supervisord's main loop.

Stopping a process takes time, and supervisord is single-threaded: an RPC
method must not wait. An operation is written as a generator that yields a
*poll* function whenever it has to wait; the poll returns ``NOT_DONE_YET``
until the wait is over, then the value sent back into the generator. It
yields ``COMMITTED`` once its durable part (its files) is done: a caller
that does not wait for the processes gets its answer from then on.

A ``JobQueue`` runs the jobs of one key (a partition) one after the other;
supervisord has one (``queue_of``), however many RPC interfaces it makes.
Jobs advance when the RPC's deferred result is polled and, should the
client go away or not wait, on supervisord's TICK events: an operation
always runs to its end. Whatever a job raises ends that job only: it is
logged and becomes the outcome of its own caller, never another's.
"""

import collections
import time
import traceback
import weakref

from supervisor import events
from supervisor.http import NOT_DONE_YET
from supervisor.xmlrpc import RPCError

from supervisor_slapos.faults import as_fault

# supervisord polls a deferred result whose delay is 0 at every turn of its
# loop, and one with a delay only when something else wakes the loop (its
# poll() otherwise sleeps up to 1 s): a job working in time slices would
# run one slice a second. supervisor's own stopProcess uses 0 too.
POLL_DELAY = 0

# Yielded by an operation once its files are written or removed.
COMMITTED = object()

# The key of startAllPartitions' jobs (the offline start); partition ids
# are never empty.
STARTALL_KEY = ''


class Job:
    """One operation: a generator of poll functions."""

    def __init__(self, steps, what):
        self.what = what  # names the operation in the log
        self._steps = steps
        self._poll = None
        self.committed = False
        self.done = False
        self.result = None
        self.error = None  # the exception that ended the job
        self.fault = None  # and the RPCError its caller gets for it

    def advance(self):
        """Run as far as possible; return True once the job has ended.

        Never raises: an error ends the job and is kept for its outcome.
        """
        try:
            while not self.done:
                if not self._step():
                    return False
        except Exception as error:
            self._finish(error=error)
        return True

    def _step(self):
        """Poll, then run to the next yield; False while the poll waits."""
        value = None
        if self._poll is not None:
            value = self._poll()
            if value is NOT_DONE_YET:
                return False
        try:
            step = self._steps.send(value)
        except StopIteration as stop:
            self._finish(result=stop.value)
            return True
        if step is COMMITTED:
            self.committed = True
            step = None
        self._poll = step
        return True

    def _finish(self, result=None, error=None):
        self.done = self.committed = True
        self.result = result
        self.error = error
        if error is not None:
            self.fault = as_fault(error)
        self._steps = self._poll = None

    def outcome(self):
        """The job's result, or raise its error as a fault."""
        if self.fault is not None:
            raise self.fault
        return self.result


class JobQueue:
    """Jobs by key; the jobs of one key run in order, one at a time.

    A job that fails is logged on ``logger``. Until its caller collects
    the outcome, or another job of its key ends, its fault is the key's
    ``last_error``: an operation that outlived its call (``wait=False``, a
    client gone) has no other way to tell.
    """

    def __init__(self, logger):
        self._logger = logger
        self._queues = {}
        self._uncollected = {}  # key: the last job that failed unseen

    def submit(self, key, steps, what):
        job = Job(steps, what)
        queue = self._queues.setdefault(key, collections.deque())
        if queue:
            self._logger.debug(
                f'slapos: {what} queued behind {queue[-1].what}'
            )
        queue.append(job)
        self.advance(key)
        return job

    def advance(self, key):
        queue = self._queues.get(key)
        while queue:
            if not queue[0].advance():
                return
            self._ended(key, queue.popleft())
        self._queues.pop(key, None)

    def advance_all(self, event=None):
        for key in list(self._queues):
            self.advance(key)

    def busy(self, key):
        """True while a job of ``key`` is running or queued."""
        return key in self._queues

    def last_error(self, key):
        """The fault text of the last job of ``key`` to end, when it
        failed and no caller received it; else ''."""
        job = self._uncollected.get(key)
        return '' if job is None else job.fault.text

    def _ended(self, key, job):
        if job.error is None:
            self._uncollected.pop(key, None)
            return
        self._uncollected[key] = job
        if isinstance(job.error, RPCError):
            self._logger.warn(f'slapos: {job.what} failed: {job.error.text}')
        else:
            self._logger.error(
                f'slapos: {job.what} failed: {job.fault.text}\n'
                + ''.join(
                    traceback.format_exception(
                        type(job.error), job.error, job.error.__traceback__
                    )
                )
            )

    def answer(self, key, job, wait):
        """What the caller of ``job`` gets now: ``NOT_DONE_YET``, the
        job's outcome, or True once it committed for a caller that does
        not ``wait`` for the processes."""
        self.advance(key)
        if job.done:
            if self._uncollected.get(key) is job:
                del self._uncollected[key]
            return job.outcome()
        if job.committed and not wait:
            return True
        return NOT_DONE_YET

    def run(self, method, key, steps, wait):
        """Submit ``steps`` as a job of ``key`` for RPC method ``method``:
        the answer now if there is one, else a deferred result that waits
        for it."""
        job = self.submit(key, steps, f'{method}({key})' if key else method)
        deferred = self.deferred(key, job, wait)
        answer = self.answer(key, job, wait)
        return deferred if answer is NOT_DONE_YET else answer

    def deferred(self, key, job, wait):
        """A deferred result for supervisord: ``answer`` until done."""

        def wait_for_job():
            return self.answer(key, job, wait)

        wait_for_job.delay = POLL_DELAY
        return wait_for_job


_QUEUES = weakref.WeakKeyDictionary()


def queue_of(supervisord):
    """The one JobQueue of ``supervisord``: supervisord makes an RPC
    interface per HTTP server, and jobs on one partition must be serialized
    whichever server they came through. A reload makes a new supervisord
    (and clears the event subscriptions), so a new queue."""
    queue = _QUEUES.get(supervisord)
    if queue is None:
        queue = _QUEUES[supervisord] = JobQueue(supervisord.options.logger)
        events.subscribe(events.TickEvent, queue.advance_all)
    return queue


def poll_callbacks(callbacks):
    """Poll supervisor's own deferred callbacks until each has ended.

    ``callbacks`` maps a name to a deferred callback (e.g. what
    ``startProcess(name, wait=True)`` returns). The poll returns
    ``{name: RPCError}`` for those that raised (whatever they raised, as
    its fault: ``faults.as_fault``), once none is pending.
    """
    pending = dict(callbacks)
    failures = {}

    def poll():
        for name, callback in list(pending.items()):
            try:
                if callback() is NOT_DONE_YET:
                    continue
            except Exception as error:  # never into supervisord's loop
                failures[name] = as_fault(error)
            del pending[name]
        return NOT_DONE_YET if pending else failures

    return poll


def time_sliced(
    items, action, budget, clock=time.monotonic, interrupted=lambda: False
):
    """Poll that calls ``action(item)`` for each item, ``budget`` seconds of
    work at a time, so supervisord's loop runs between slices. A slice also
    ends as soon as ``interrupted()`` is true (checked after each item, so
    that every slice makes progress). It returns the list of what
    ``action`` returned, once every item is done."""
    iterator = iter(items)
    results = []
    exhausted = False

    def poll():
        nonlocal exhausted
        deadline = clock() + budget
        while clock() < deadline:
            try:
                item = next(iterator)
            except StopIteration:
                exhausted = True
                break
            results.append(action(item))
            if interrupted():
                break
        return results if exhausted else NOT_DONE_YET

    return poll
