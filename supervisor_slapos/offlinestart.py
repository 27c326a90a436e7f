"""No second lost at start or reload: the first turn of supervisord's loop
does not sleep, and the offline start runs inside supervisord as soon as
it runs, where the partitions' states are the node's own.

Two pieces, one per supervisord (a reload makes a new one, and a new
set of both):

- ``LoopDriver`` is an entry of supervisord's socket map: the write end
  of a pipe, which is always writable. supervisord asks each entry of its
  map, at each turn of its loop, whether it wants to write; while the
  driver says yes, ``poll()`` returns at once and the driver is called.
  It says yes for the first turn (supervisor 4.2.5 and 4.3.0 otherwise
  sleep up to a second in their first ``poll()`` before they start any
  process, the listener included), and then whenever the offline start
  has work to do. Nothing is ever written: the pipe holds no byte that a
  check for waiting clients (``clients.waiting``, which asks for
  readable sockets) could take for a client. It is not an asyncore
  dispatcher (whose ``close()`` would ``shutdown()`` a pipe): at
  supervisord's stop it leaves the map by itself, and closes its pipe.
- ``OfflineStart`` is the offline start (``operations.start_all``, a job
  of the plugin's job queue) begun on ``SupervisorRunningEvent``, at every
  start and reload, when the listener's command line in supervisord's
  configuration says that the states are the node's own (``--slapgrid``,
  or no master URL): ``listenercli.ListenerArgs.states_are_the_nodes``.
  Beside slapgrid it first waits for the partitions' addresses of
  ``computer_json`` (at most ``--address-wait`` seconds), trying them at
  each turn of the loop (about once a second while the loop is idle, at
  most every ``addresses.POLL_INTERVAL``) without ever making it wait:
  the listener's own wait (``addresses.AddressWait``), stepped by the loop.
  The listener asks ``slapos.getOfflineStart()`` and, when the plugin has
  it, leaves it to the plugin: it is done once, not twice. With a master
  URL and without ``--slapgrid`` the listener owns the states (it syncs
  first): the plugin never starts anything by itself.

Whatever these pieces raise is logged, never raised into supervisord's
loop. On a supervisor whose loop was not checked (``internals``), neither
is installed and the listener does everything, as before.
"""

import contextlib
import dataclasses
import io
import logging
import os
import shlex
import time
import traceback
import weakref

from supervisor import events

from supervisor_slapos import internals
from supervisor_slapos.addresses import (
    AddressWait,
    addresses_to_wait_for,
    can_bind,
)
from supervisor_slapos.jobs import STARTALL_KEY
from supervisor_slapos.listenercli import parse_args

LISTENER_SCRIPT = 'supervisor-slapos-listener'
LISTENER_MODULE = 'supervisor_slapos.listener'

# getOfflineStart()'s answers
BY_PLUGIN = 'plugin'
BY_LISTENER = 'listener'
WAITING = 'waiting for addresses'
STARTING = 'starting'
DONE = 'done'


def listener_arguments(command):
    """The arguments of the plugin's listener in a ``command`` line of
    supervisord's configuration, or None when it runs something else."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if argv and os.path.basename(argv[0]) == LISTENER_SCRIPT:
        return argv[1:]
    for index in range(1, len(argv) - 1):
        if argv[index] == '-m':
            return (
                argv[index + 2 :]
                if argv[index + 1] == LISTENER_MODULE
                else None
            )
    return None


def listener_configs(commands):
    """The ``ListenerArgs`` of each of the plugin's listeners among
    ``commands`` (``(command, directory)`` pairs); None when one of them
    does not parse (then the listener says why, and keeps the offline
    start)."""
    configs = []
    for command, directory in commands:
        argv = listener_arguments(command)
        if argv is None:
            continue
        try:
            with (
                contextlib.redirect_stderr(io.StringIO()),
                _working_directory(directory),
            ):
                config = parse_args(argv)
                if config.computer_json:  # read later, from here
                    config = dataclasses.replace(
                        config,
                        computer_json=os.path.abspath(config.computer_json),
                    )
            configs.append(config)
        except (SystemExit, OSError):
            return None  # a bad argument, or a directory that is not
    return configs


@contextlib.contextmanager
def _working_directory(directory):
    """A relative ``--cfg`` is the listener's: read it from the directory
    supervisord runs the listener in."""
    if not directory:
        yield
        return
    here = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(here)


def plugin_config(configs):
    """The listener config whose offline start the plugin takes: the
    first, when every listener's states are the node's own; else None."""
    if not configs or not all(c.states_are_the_nodes for c in configs):
        return None
    return configs[0]


class LoopDriver:
    """An entry of supervisord's socket map that makes its loop turn at
    once while ``due()`` is true, and then calls ``work()``."""

    def __init__(self, socket_map, due, work, logger):
        self._map = socket_map
        self._due = due
        self._work = work
        self._logger = logger
        self.first_turn = True  # wake supervisord's first poll()
        self.stopping = False
        # what writable() last answered: whether supervisord's poller
        # holds the fd (an always-writable fd that it holds has a write
        # event at every turn, after which the loop asks again)
        self._registered = False
        self._read_fd, self.fd = os.pipe()
        os.set_blocking(self.fd, False)
        for stale in [
            fd
            for fd, entry in self._map.items()
            if isinstance(entry, LoopDriver)
        ]:
            # a driver of the supervisord before a reload: its pipe was
            # closed by supervisord's cleanup_fds (the numbers may be
            # another file's now), its entry is stale
            del self._map[stale]
        self._map[self.fd] = self

    # what supervisord's loop asks

    def readable(self):
        return False

    def writable(self):
        self._registered = self._wants_turn()
        return self._registered

    def _wants_turn(self):
        if self.stopping:
            return False
        if self.first_turn:
            return True
        try:
            return bool(self._due())
        except Exception:
            _log_failure(self._logger)
            self.stopping = True
            return False

    def handle_write_event(self):
        self.first_turn = False
        if self.stopping:
            # after this call the loop unregisters the fd (not writable)
            self.detach()
            return
        try:
            self._work()
        except Exception:
            _log_failure(self._logger)
            self.stopping = True

    def handle_read_event(self):
        """Never asked (not readable)."""

    def handle_error(self):
        self._logger.error(f'slapos: loop driver: {_exception_text()}')

    # supervisord stops (or reloads)

    def stop(self, event=None):
        """supervisord stops or reloads: leave its loop, at once when its
        poller does not hold the fd, else at the next write event (after
        which the loop unregisters it)."""
        self.stopping = True
        if not self._registered:
            self.detach()

    def detach(self):
        if self._map.get(self.fd) is self:
            del self._map[self.fd]
            for fd in (self.fd, self._read_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)


def plugin_log(logger):
    """``log(level, text)`` (a ``logging`` level) into supervisord's
    ``logger``, the plugin's words first."""

    def log(level, text):
        say = logger.warn if level >= logging.WARNING else logger.info
        say(f'slapos: {text}')

    return log


def _exception_text():
    return traceback.format_exc()


def _log_failure(logger):
    """Log the exception being handled as the end of the offline start."""
    logger.error(f'slapos: the offline start failed: {_exception_text()}')


class OfflineStart:
    """The offline start of one supervisord's start, by the plugin.

    ``submit()`` puts ``operations.start_all()`` in ``jobs`` and returns
    its job. ``addresses`` are the partitions' addresses to wait for, at
    most ``address_wait`` seconds from ``begin()``; ``clock`` and
    ``bindable`` come in for tests.
    """

    def __init__(
        self,
        submit,
        advance,
        logger,
        addresses=(),
        address_wait=0.0,
        clock=time.monotonic,
        bindable=can_bind,
    ):
        self._submit = submit
        self._advance = advance
        self._wait = AddressWait(
            addresses, address_wait, clock, plugin_log(logger), bindable
        )
        self.state = ''  # not begun
        self._job = None

    def begin(self, event=None):
        """supervisord runs (a ``SupervisorRunningEvent``): start, or
        wait for the addresses first."""
        if self.state:
            return
        self._wait.begin()
        self.state = WAITING
        if self._wait.done:
            self._start()

    def due(self):
        """Has the loop work for this start now?"""
        if self.state == STARTING:
            return True
        return self.state == WAITING and self._wait.seconds_to_next_try() <= 0

    def work(self):
        """One turn of supervisord's loop: try the addresses again, or
        advance the start."""
        if self.state == WAITING:
            self._wait.step()
            if self._wait.done:
                self._start()
        elif self.state == STARTING:
            self._advance()
            self._check_done()

    def _start(self):
        self.state = STARTING
        self._job = self._submit()
        self._check_done()

    def _check_done(self):
        if self._job is not None and self._job.done:
            self.state = DONE
            self._job = None


_INSTALLED = weakref.WeakKeyDictionary()


def install(supervisord, jobs, start_all, enabled=True):
    """Set both pieces up for ``supervisord`` (once, however many RPC
    interfaces it makes): ``jobs`` its ``JobQueue``, ``start_all`` a
    function returning ``operations.start_all()``'s steps; ``enabled``
    the ``instant_start`` option (false: neither piece, supervisor's own
    first poll and the listener's offline start, as before). Returns what
    ``getOfflineStart()`` answers. Keyed on the supervisord object itself
    (weakly), not on its ``id()``, which a reload's new one may reuse."""
    installed = _INSTALLED.get(supervisord)
    if installed is None:
        installed = _INSTALLED[supervisord] = (
            _install(supervisord, jobs, start_all)
            if enabled
            else OfflineStartState(None)
        )
    return installed


def _install(supervisord, jobs, start_all):
    options = supervisord.options
    logger = options.logger
    reason = internals.loop_unsupported_reason()
    if reason is not None:
        logger.warn(
            f'slapos: supervisord\'s first poll() waits and the '
            f'listener does the offline start: {reason}'
        )
        return OfflineStartState(None)
    config = None
    try:
        configs = listener_configs(internals.listener_commands(options))
        config = plugin_config(configs)
        addresses = _addresses(config, logger) if config else ()
    except Exception:
        logger.error(
            'slapos: the offline start is left to the listener: '
            f'{_exception_text()}'
        )
        config = None
    start = None
    if config is not None:
        start = OfflineStart(
            lambda: jobs.submit(
                STARTALL_KEY, start_all(), 'offline start (inside supervisord)'
            ),
            lambda: jobs.advance(STARTALL_KEY),
            logger,
            addresses,
            config.address_wait,  # no addresses to wait for, without slapgrid
        )
        logger.info(
            'slapos: the offline start runs inside supervisord at '
            'every start and reload (the listener\'s states are '
            'the node\'s own)'
        )
    socket_map = internals.socket_map(options)
    driver = LoopDriver(
        socket_map,
        start.due if start else (lambda: False),
        start.work if start else (lambda: None),
        logger,
    )

    def begin(event):
        try:
            start.begin()
        except Exception:
            _log_failure(logger)

    if start is not None:
        events.subscribe(events.SupervisorRunningEvent, begin)
    events.subscribe(events.SupervisorStoppingEvent, driver.stop)
    return OfflineStartState(start)


def _addresses(config, logger):
    """The partitions' addresses to wait for before the offline start."""
    if not (
        config.slapgrid and config.computer_json and config.address_wait > 0
    ):
        return ()
    return addresses_to_wait_for(config.computer_json, plugin_log(logger))


class OfflineStartState:
    """What ``getOfflineStart()`` answers."""

    def __init__(self, start):
        self._start = start

    def as_dict(self):
        if self._start is None:
            return {'by': BY_LISTENER, 'state': ''}
        return {'by': BY_PLUGIN, 'state': self._start.state}
