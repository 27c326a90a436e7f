"""The event listener: offline start, master sync, format report.

supervisord starts it (and restarts it at every start and reload) as::

    [eventlistener:slapos]
    command = supervisor-slapos-listener --master-url URL --computer-id ID
    events = SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60
    buffer_size = 100

When it starts, it asks the master for this node's instances; when it gets
no valid list, it calls ``slapos.startAllPartitions()`` at once (the
offline start). Otherwise it applies the requested states partition by
partition through the ``slapos`` RPC interface and reports the reached
states back. Then it asks again about once a minute, at this node's own
moment within the minute (``schedule.py``); while the master does not
answer it backs off and runs the offline start again once a minute.

Beside slapgrid (``--slapgrid``) it only runs the offline start, first
waiting (at most ``--address-wait`` seconds) for the partitions' addresses
of computer_json, and sends the format report. Where the plugin runs the
offline start of this start inside supervisord (``--slapgrid`` or no
master: ``offlinestart.py``, ``slapos.getOfflineStart()``), the listener
leaves it (and its address wait) to the plugin. Loaded by supervisord
before the ``slapos`` RPC interface (which loads only at a start or
reload), it says so once and waits for it, answering its events.

The pieces: ``eventloop.py`` speaks supervisord's protocol and waits for
the moments, ``schedule.py`` chooses them, :class:`SlaposListener` carries
the events and the moments to its policy (``listenerpolicy.py``: alone or
beside slapgrid), which decides and owns the sync, and acts through a
narrow set of actions (``listeneractions.py``); ``syncpass.py`` applies
one instance list, ``reportedstates.py`` and ``formatreport.py`` keep what
the master accepted, ``addresses.py`` waits for the addresses. The
command line is ``listenercli.py``.

stdout carries the listener protocol only; everything else is logged on
stderr.
"""

import logging
import random
import sys
import time
import xmlrpc.client

from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.addresses import ADDRESS_WAIT, can_bind
from supervisor_slapos.eventloop import EventLoop, guarded
from supervisor_slapos.listeneractions import ListenerActions
from supervisor_slapos.listenerpolicy import (
    Alone,
    BesideSlapgrid,
    ListenerParts,
)
from supervisor_slapos.schedule import PERIOD, Schedule, phase_of
from supervisor_slapos.syncpass import RPC_ERRORS, describe_rpc_error

# A SUPERVISOR_STATE_CHANGE_RUNNING this soon after the listener's own start
# attempt is the same supervisord start (supervisord spawns its listeners
# after it enters RUNNING): it is not worth a second attempt.
RUNNING_GRACE = 60.0
# supervisor.sendRemoteCommEvent('slapos-sync', '') asks for a sync now,
# whatever the backoff (for listeners subscribed to REMOTE_COMMUNICATION).
SYNC_COMM_TYPE = 'slapos-sync'
# How long to wait for supervisord to tell the state directory at start.
STATE_DIR_ATTEMPTS = 20
STATE_DIR_INTERVAL = 0.5
# While supervisord has not loaded the slapos RPC interface, how often to
# ask again (ticks and sync requests ask too).
INTERFACE_POLL = PERIOD


def make_logger(stream):
    """A logger writing to ``stream`` only; not registered globally."""
    logger = logging.Logger('supervisor-slapos-listener', logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter('%(asctime)s %(levelname)s %(message)s')
    )
    logger.addHandler(handler)
    return logger


def interface_missing(exc):
    """True when ``exc`` says supervisord has no ``slapos`` namespace."""
    return (
        isinstance(exc, xmlrpc.client.Fault)
        and exc.faultCode == SupervisorFaults.UNKNOWN_METHOD
    )


class SlaposListener:
    """One listener process: its start (and the wait for the slapos RPC
    interface), then each event and each moment of its schedule carried
    to its policy, which decides what to do.

    Every collaborator comes in explicitly: ``rpc`` is an XML-RPC proxy to
    supervisord (with the ``slapos`` namespace), ``master`` a
    :class:`~supervisor_slapos.master.MasterClient` or None (always
    offline), ``state_dir`` the directory of the listener's small state
    files (None: ask ``slapos.getStateDir()`` at start),
    ``clock``/``rng``/``sleep``/``wait`` (see :class:`EventLoop`) make it
    deterministic in tests.
    ``phase`` is this node's moment in the minute (default: from the
    computer id). ``policy`` is what the listener does on this node:
    :class:`~supervisor_slapos.listenerpolicy.Alone`, or with ``slapgrid``
    :class:`~supervisor_slapos.listenerpolicy.BesideSlapgrid` (with
    ``address_wait`` and ``bindable``).
    """

    def __init__(
        self,
        rpc,
        master=None,
        state_dir=None,
        computer_json=None,
        stdin=None,
        stdout=None,
        stderr=None,
        clock=time.time,
        rng=None,
        sleep=time.sleep,
        phase=None,
        slapgrid=False,
        wait=None,
        address_wait=ADDRESS_WAIT,
        bindable=can_bind,
    ):
        self.rpc = rpc
        self.master = master
        self.state_dir = state_dir
        self.computer_json = computer_json
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.clock = clock
        self.sleep = sleep
        self.wait = wait
        self.policy = (
            BesideSlapgrid(address_wait, bindable) if slapgrid else Alone()
        )
        self.logger = make_logger(self.stderr)
        if phase is None:
            phase = phase_of(master.computer_id if master else '')
        self.schedule = Schedule(
            phase, rng if rng is not None else random.Random()
        )
        # what the policy acts through, once the state directory is known
        self.actions = None
        self.start_attempt = None
        # when to ask supervisord for the slapos interface again (None:
        # not waiting for it)
        self.next_interface_poll = None

    # life cycle

    def run(self):
        """Start, then serve events until supervisord closes stdin."""
        self.start()
        self.event_loop().run()

    def event_loop(self):
        return EventLoop(
            self, self.stdin, self.stdout, self.logger, wait=self.wait
        )

    def start(self):
        """Set up the state, then make the start attempt by itself: the
        SUPERVISOR_STATE_CHANGE_RUNNING event may never arrive. Without
        the slapos RPC interface (loaded only at supervisord's next start
        or reload), wait for it answering events instead."""
        if self.state_dir is None:
            self.state_dir = self._ask_state_dir()
            if self.state_dir is None:
                self.next_interface_poll = self.clock() + INTERFACE_POLL
                return
        self._begin()

    def _begin(self):
        """The start proper, once the state directory is known."""
        self.next_interface_poll = None
        self.logger.info(
            'started: master %s, state in %s, phase %.3f s%s',
            self.master.display_url if self.master else 'none (offline)',
            self.state_dir,
            self.schedule.phase,
            self.policy.label,
        )
        started_by_plugin = self._offline_start_by_plugin()
        self.actions = ListenerActions(
            self.rpc,
            self.schedule,
            self.logger,
            self.clock,
            self.state_dir,
            self.master.display_url if self.master else '',
            started_by_plugin,
        )
        self.policy.begin(
            self.actions,
            ListenerParts(
                self.rpc,
                self.master,
                self.state_dir,
                self.computer_json,
                self.logger,
                self.clock,
                self.sleep,
            ),
        )
        if not started_by_plugin:
            guarded(self.logger, self.policy.before_offline_start)
        self.start_attempt = self.clock()
        guarded(self.logger, self.attempt, fallback=True)

    def _offline_start_by_plugin(self):
        """Does the plugin run the offline start of this start? (No, when
        it cannot tell: an older plugin, or supervisord not answering.)"""
        try:
            answer = self.rpc.slapos.getOfflineStart()
        except RPC_ERRORS:
            return False
        return isinstance(answer, dict) and answer.get('by') == 'plugin'

    def _poll_interface(self, asked=False):
        """While waiting for the slapos interface: is it there now?
        ``asked``: a sync was asked for, say that it still waits."""
        try:
            state_dir = self.rpc.slapos.getStateDir()
        except RPC_ERRORS as exc:
            self.next_interface_poll = self.clock() + INTERFACE_POLL
            if asked:
                self.logger.warning(
                    'sync asked, but still waiting for the '
                    'slapos RPC interface: %s',
                    describe_rpc_error(exc),
                )
            return
        if not isinstance(state_dir, str) or not state_dir:
            self.next_interface_poll = self.clock() + INTERFACE_POLL
            return
        self.logger.info('the slapos RPC interface is loaded: starting')
        self.state_dir = state_dir
        self._begin()

    # what the event loop calls

    def handle_event(self, headers, payload):
        name = headers.get('eventname', '')
        if self.next_interface_poll is not None:
            self._poll_interface(asked=self._sync_asked(name, payload))
            return
        if name == 'SUPERVISOR_STATE_CHANGE_RUNNING':
            now = self.clock()
            if (
                self.start_attempt is not None
                and 0 <= now - self.start_attempt < RUNNING_GRACE
            ):
                return  # the start attempt already handled this start
            self.attempt(fallback=True)
        elif name.startswith('TICK_'):
            self.due()  # a tick only wakes the listener
        elif self._sync_asked(name, payload):
            self.attempt(fallback=False)

    @staticmethod
    def _sync_asked(name, payload):
        """Is this event ``sendRemoteCommEvent('slapos-sync', ...)``?"""
        if name != 'REMOTE_COMMUNICATION':
            return False
        first_line = payload.split('\n', 1)[0]
        return first_line.strip() == f'type:{SYNC_COMM_TYPE}'

    def seconds_until_due(self):
        """Seconds until the schedule's next moment (None: none)."""
        if self.next_interface_poll is not None:
            return max(0.0, self.next_interface_poll - self.clock())
        return self.schedule.seconds_until_due(
            self.clock(), asks_master=self.master is not None
        )

    def due(self):
        """Do what the schedule says is due now, if anything."""
        if self.next_interface_poll is not None:
            if self.clock() >= self.next_interface_poll:
                self._poll_interface()
            return
        if self.master is not None and self.schedule.attempt_due(self.clock()):
            self.attempt(fallback=False)
        if self.schedule.offline_start_due(self.clock()):
            self.offline_start()

    # one attempt to reach the master

    def attempt(self, fallback):
        """One attempt to reach the master, as the policy makes it (alone:
        the sync; beside slapgrid: the format report); ``fallback``: at a
        start.

        No request is retried: a failure is retried by the schedule, so
        the offline start waits for one failed request at most.
        """
        self.actions.begin_attempt()
        self.policy.attempt(fallback)

    def offline_start(self):
        """The schedule's moment for the offline start (alone, while
        offline): the policy runs it."""
        self.policy.offline_start()

    # state files

    def _ask_state_dir(self):
        """``slapos.getStateDir()``, waiting a little for supervisord;
        None (said once in the log) when supervisord has not loaded the
        slapos RPC interface or never answers."""
        last = None
        for _ in range(STATE_DIR_ATTEMPTS):
            try:
                state_dir = self.rpc.slapos.getStateDir()
            except RPC_ERRORS as exc:
                if interface_missing(exc):
                    self.logger.warning(
                        'waiting for the slapos RPC interface: supervisord '
                        'has loaded this listener but not the interface '
                        '(it loads RPC interfaces only at a start or '
                        'reload; a reload loads it): %s',
                        describe_rpc_error(exc),
                    )
                    return None
                last = describe_rpc_error(exc)
            else:
                if isinstance(state_dir, str) and state_dir:
                    return state_dir
                last = f'bad answer {state_dir!r}'
            self.sleep(STATE_DIR_INTERVAL)
        self.logger.error(
            'slapos.getStateDir() failed: %s; waiting for '
            'the slapos RPC interface',
            last,
        )
        return None


if __name__ == '__main__':
    # python -m supervisor_slapos.listener: the command line's main
    from supervisor_slapos.listenercli import main

    main()
