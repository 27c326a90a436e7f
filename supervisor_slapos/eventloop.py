"""supervisord's event listener protocol, and waiting for a moment.

The listener writes ``READY``, reads one event (a header line, then
``len`` characters of payload) and answers ``RESULT 2\\nOK``. Between
``READY`` and the next event it may have work of its own at a moment it
chose (the schedule): it waits on stdin with a timeout, so that it needs
no tick to wake and never delays an event. supervisord sends nothing
before ``READY`` and nothing after an event until the answer, so stdin's
buffer is empty whenever the loop waits on it.
"""

import select

from supervisor import childutils

# A header line that does not parse, answered OK like any other event.
EMPTY_EVENT = ({}, '')


def stdin_waiter(stdin):
    """``wait(timeout)``: True once ``stdin`` can be read (an event or end
    of input), False when ``timeout`` seconds passed first (None: no
    limit). A stream without a file descriptor (a test's StringIO) is
    always ready."""
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return lambda timeout: True

    def wait(timeout):
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)

    return wait


def guarded(logger, function, *args, **kwargs):
    """``function(*args, **kwargs)``; any exception logged on ``logger``
    instead of ending the listener (then None)."""
    try:
        return function(*args, **kwargs)
    except Exception:
        logger.exception('unexpected error (the listener goes on)')
        return None


class EventLoop:
    """Serve ``handler``'s events until supervisord goes away.

    ``handler`` has ``handle_event(headers, payload)``, ``due()`` (do the
    work whose moment has come) and ``seconds_until_due()`` (None: no
    work of its own). Exceptions from either are logged and the loop goes
    on: the listener must never die of an event.
    """

    def __init__(self, handler, stdin, stdout, logger, wait=None):
        self.handler = handler
        self.stdin = stdin
        self.stdout = stdout
        self.logger = logger
        self.wait = wait if wait is not None else stdin_waiter(stdin)

    def run(self, test=False):
        """Serve events; return at end of stdin or when stdout is closed
        (``test``: after one event)."""
        while True:
            try:
                childutils.listener.ready(self.stdout)
                self._wait_for_event()
                event = self.read_event()
            except (BrokenPipeError, ValueError):
                # ValueError: I/O operation on a closed file
                self.logger.info('supervisord went away: exiting')
                return
            if event is None:
                self.logger.info('stdin closed: exiting')
                return
            guarded(self.logger, self.handler.handle_event, *event)
            try:
                childutils.listener.ok(self.stdout)
            except (BrokenPipeError, ValueError):
                self.logger.info('supervisord went away: exiting')
                return
            if test:
                return

    def _wait_for_event(self):
        """Do the handler's own work at its moments until an event (or
        the end of input) is there."""
        while True:
            timeout = guarded(self.logger, self.handler.seconds_until_due)
            if self.wait(None if timeout is None else max(0.0, timeout)):
                return
            guarded(self.logger, self.handler.due)

    def read_event(self):
        """One event: ``(headers, payload)``, or None at end of input."""
        line = self.stdin.readline()
        if not line:
            return None
        try:
            headers = dict(item.split(':', 1) for item in line.split())
            length = int(headers.get('len', '0'))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.logger.error('ignoring a bad event header: %r', line[:200])
            return EMPTY_EVENT
        payload = self.stdin.read(length) if length else ''
        return headers, payload
