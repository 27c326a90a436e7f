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
the moments, ``schedule.py`` chooses them, ``syncpass.py`` applies one
instance list, ``reportedstates.py`` and ``formatreport.py`` keep what the
master accepted. :class:`SlaposListener` decides what to do when.

stdout carries the listener protocol only; everything else is logged on
stderr.
"""
import argparse
import logging
import os
import random
import sys
import threading
import time
import xmlrpc.client
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from supervisor import childutils
from supervisor.xmlrpc import Faults

from supervisor_slapos import __version__
from supervisor_slapos.addresses import (
    can_bind, missing_addresses, numeric_addresses, wait_for_addresses)
from supervisor_slapos.eventloop import EventLoop
from supervisor_slapos.formatreport import (
    NOT_SENT, FormatFileError, FormatReport, partition_addresses)
from supervisor_slapos.master import (
    DEFAULT_TIMEOUT, MasterClient, MasterError, MasterUnreachable)
from supervisor_slapos.reportedstates import ReportedStates
from supervisor_slapos.ownership import Ownership
from supervisor_slapos.schedule import PERIOD, Schedule, phase_of
from supervisor_slapos.slaposcfg import read_slapos_cfg
from supervisor_slapos.startresults import summary
from supervisor_slapos.syncpass import (
    RPC_ERRORS, SyncPass, describe_rpc_error)
from supervisor_slapos.syncstate import (
    NO_CONTACT_BESIDE_SLAPGRID, SyncState, read_sync_state,
    write_sync_state)

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
# With --slapgrid: the longest wait for the partitions' addresses.
ADDRESS_WAIT = 120.0
MAX_ERRORS_SHOWN = 5
# logged where the listener leaves the offline start to the plugin
PLUGIN_STARTED = ('offline start: left to the plugin, which ran it inside '
                  'supervisord')


def make_logger(stream):
    """A logger writing to ``stream`` only; not registered globally."""
    logger = logging.Logger('supervisor-slapos-listener', logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(
        '%(asctime)s %(levelname)s %(message)s'))
    logger.addHandler(handler)
    return logger


def shorten(items, separator=', ', what=''):
    """The first few ``items`` on one line, and how many more."""
    shown = separator.join(items[:MAX_ERRORS_SHOWN])
    if len(items) > MAX_ERRORS_SHOWN:
        shown += f' (and {len(items) - MAX_ERRORS_SHOWN} more{what})'
    return shown


def interface_missing(exc):
    """True when ``exc`` says supervisord has no ``slapos`` namespace."""
    return (isinstance(exc, xmlrpc.client.Fault)
            and exc.faultCode == Faults.UNKNOWN_METHOD)


def summarize(errors):
    """The errors of one attempt as one line for ``last_error``."""
    return shorten(errors, '; ', ' errors')


class Alone:
    """The listener owns the partitions' states: it syncs them with the
    master and, while the master does not answer, runs the offline start
    again about once a minute."""

    label = ''

    def before_offline_start(self, listener):
        """Nothing to wait for."""

    def attempt(self, listener, fallback):
        listener.sync(fallback)

    def offline_start(self, listener):
        listener.schedule.offline_started(listener.clock())
        listener.start_all()


class BesideSlapgrid:
    """slapgrid owns the partitions' states (``--slapgrid``): only the
    offline start at a start, first waiting, at most ``address_wait``
    seconds, until ``bindable`` (see ``addresses.py``) says that every
    address of computer_json exists on the host; and the format report."""

    label = ' (beside slapgrid)'

    def __init__(self, address_wait=ADDRESS_WAIT, bindable=can_bind):
        self.address_wait = address_wait
        self.bindable = bindable
        # the format report sent while the offline start waits for the
        # addresses: (thread, outcome), until the attempt takes it
        self._early_report = None

    def before_offline_start(self, listener):
        """Wait (bounded) for the partitions' numeric addresses (anything
        else in the dump is logged and skipped: nothing is resolved); the
        format report, which needs no address, goes out meanwhile."""
        if not (listener.computer_json and self.address_wait > 0):
            return
        logger, clock = listener.logger, listener.clock
        try:
            addresses = partition_addresses(listener.computer_json)
        except FormatFileError as exc:
            logger.warning('not waiting for the partitions\' '
                           'addresses: computer_json %s', exc)
            return
        addresses, others = numeric_addresses(addresses)
        if others:
            logger.warning('not waiting for %d entries of computer_json '
                           'that are no numeric address of this host (no '
                           'name is resolved): %s', len(others),
                           shorten([repr(o) for o in others]))
        begin = clock()
        deadline = begin + self.address_wait
        missing = missing_addresses(addresses, deadline, clock,
                                    self.bindable)
        if not missing:
            return
        logger.info('waiting up to %g s for %d of the partitions\' '
                    '%d addresses before the offline start: %s',
                    self.address_wait, len(missing), len(addresses),
                    shorten(missing))
        self._send_report_meanwhile(listener)
        missing = wait_for_addresses(missing, deadline, clock,
                                     listener.sleep, self.bindable)
        waited = clock() - begin
        if missing:
            logger.warning('starting anyway after %.1f s: %d addresses '
                           'still missing: %s', waited, len(missing),
                           shorten(missing))
        else:
            logger.info('every address is there after %.1f s', waited)

    def _send_report_meanwhile(self, listener):
        """Send the format report in a thread of its own while the
        offline start waits for the addresses (the attempt that follows
        takes its outcome: ``_format_sent``)."""
        if listener.format is None:
            return
        outcome = {}

        def send():
            try:
                outcome['sent'] = listener.format.send()
            except Exception as exc:  # the attempt raises it in its place
                outcome['error'] = exc
        thread = threading.Thread(target=send, name='format-report',
                                  daemon=True)
        thread.start()
        self._early_report = thread, outcome

    def _format_sent(self, listener):
        """``listener.format.send()``, or the outcome of the report sent
        during the address wait."""
        if self._early_report is None:
            return listener.format.send()
        thread, outcome = self._early_report
        self._early_report = None
        thread.join()
        if 'error' in outcome:
            raise outcome['error']
        return outcome['sent']

    def attempt(self, listener, fallback):
        """The offline start (at once, at a start) and the format report,
        nothing else. The mode says whether the last contact with the
        master, the format report, succeeded, and ``last_attempt`` is when
        that contact was: the listener contacts the master only when there
        is a report to send. Without computer_json it never does, and
        records so."""
        if fallback:
            listener.start_all()
        if listener.format is None:
            listener.record('unknown', [NO_CONTACT_BESIDE_SLAPGRID],
                            last_attempt=0.0)
            return
        try:
            sent = self._format_sent(listener)
        except MasterUnreachable as exc:
            listener.failed(exc)
            listener.record('offline', [str(exc)])
            return
        listener.succeeded()
        if not sent.contacted:
            previous = read_sync_state(listener.state_dir)
            listener.record(previous.mode, [],
                            last_attempt=previous.last_attempt)
            return
        if sent.accepted:
            listener.last_success = listener.clock()
        listener.record('online' if sent.accepted else 'offline',
                        sent.errors())

    def offline_start(self, listener):
        """Only at a start: slapgrid's own pass starts what is not
        running."""
        listener.start_all()


class SlaposListener:
    """One listener process: what to do at start, on an event, and when
    the schedule's moment comes.

    Every collaborator comes in explicitly: ``rpc`` is an XML-RPC proxy to
    supervisord (with the ``slapos`` namespace), ``master`` a
    :class:`MasterClient` or None (always offline), ``state_dir`` the
    directory of the listener's small state files (None: ask
    ``slapos.getStateDir()`` at start), ``clock``/``rng``/``sleep``/
    ``wait`` (see :class:`EventLoop`) make it deterministic in tests.
    ``phase`` is this node's moment in the minute (default: from the
    computer id). ``policy`` is what the listener does on this node:
    :class:`Alone`, or with ``slapgrid`` :class:`BesideSlapgrid` (with
    ``address_wait`` and ``bindable``).
    """

    def __init__(self, rpc, master=None, state_dir=None, computer_json=None,
                 stdin=None, stdout=None, stderr=None, clock=time.time,
                 rng=None, sleep=time.sleep, phase=None, slapgrid=False,
                 wait=None, address_wait=ADDRESS_WAIT, bindable=can_bind):
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
        self.policy = (BesideSlapgrid(address_wait, bindable) if slapgrid
                     else Alone())
        self.logger = make_logger(self.stderr)
        if phase is None:
            phase = phase_of(master.computer_id if master else '')
        self.schedule = Schedule(
            phase, rng if rng is not None else random.Random())
        self.format = None
        self.reported = None
        self.start_attempt = None
        # the plugin runs the offline start of this supervisord start
        # (slapos.getOfflineStart()): the listener's first one is skipped
        self.started_by_plugin = False
        self.last_attempt = 0.0
        self.last_success = 0.0
        # when to ask supervisord for the slapos interface again (None:
        # not waiting for it)
        self.next_interface_poll = None

    # life cycle

    def run(self):
        """Start, then serve events until supervisord closes stdin."""
        self.start()
        self.event_loop().run()

    def event_loop(self):
        return EventLoop(self, self.stdin, self.stdout, self.logger,
                         wait=self.wait)

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
        self.reported = ReportedStates(self.state_dir, self.logger).load()
        self.last_success = read_sync_state(self.state_dir).last_success
        if self.master is not None and self.computer_json:
            self.format = FormatReport(self.computer_json, self.master,
                                       self.state_dir, self.logger)
        self.logger.info(
            'started: master %s, state in %s, phase %.3f s%s',
            self.master.display_url if self.master else 'none (offline)',
            self.state_dir, self.schedule.phase, self.policy.label)
        self.started_by_plugin = self._offline_start_by_plugin()
        if not self.started_by_plugin:
            self._guarded(self.policy.before_offline_start, self)
        self.start_attempt = self.clock()
        self._guarded(self.attempt, fallback=True)

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
                self.logger.warning('sync asked, but still waiting for the '
                                    'slapos RPC interface: %s',
                                    describe_rpc_error(exc))
            return
        if not isinstance(state_dir, str) or not state_dir:
            self.next_interface_poll = self.clock() + INTERFACE_POLL
            return
        self.logger.info('the slapos RPC interface is loaded: starting')
        self.state_dir = state_dir
        self._begin()

    def _guarded(self, function, *args, **kwargs):
        """Call ``function``; log any exception instead of dying."""
        try:
            function(*args, **kwargs)
        except Exception:
            self.logger.exception('unexpected error (the listener goes on)')

    # what the event loop calls

    def handle_event(self, headers, payload):
        name = headers.get('eventname', '')
        if self.next_interface_poll is not None:
            self._poll_interface(asked=self._sync_asked(name, payload))
            return
        if name == 'SUPERVISOR_STATE_CHANGE_RUNNING':
            now = self.clock()
            if (self.start_attempt is not None
                    and 0 <= now - self.start_attempt < RUNNING_GRACE):
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
            self.clock(), asks_master=self.master is not None)

    def due(self):
        """Do what the schedule says is due now, if anything."""
        if self.next_interface_poll is not None:
            if self.clock() >= self.next_interface_poll:
                self._poll_interface()
            return
        if (self.master is not None
                and self.schedule.attempt_due(self.clock())):
            self.attempt(fallback=False)
        if self.schedule.offline_start_due(self.clock()):
            self.offline_start()

    # one attempt to reach the master

    def attempt(self, fallback):
        """Ask the master and sync. Without a valid instance list, run the
        offline start when ``fallback`` is true (a start) or when the
        master was answering until now, and back off.

        No request is retried: a failure is retried by the schedule, so
        the offline start waits for one failed request at most.
        """
        self.last_attempt = self.clock()
        self.schedule.attempting(self.last_attempt)
        self.policy.attempt(self, fallback)

    def sync(self, fallback):
        """The attempt of a listener alone: the format report, then the
        instance list, synced."""
        if self.master is None:
            self.record('offline', [])
            if fallback:
                self.offline_start()
            return
        sent = NOT_SENT
        try:
            if self.format is not None:
                sent = self.format.send()
            instances = self.master.list_instances()
        except MasterError as exc:
            was_online = self.schedule.next_offline_start is None
            self.failed(exc)
            self.record('offline', [*sent.errors(), str(exc)])
            if fallback or was_online:
                self.offline_start()
            return
        errors = sent.errors() + SyncPass(
            self.rpc, self.master, self.reported, self.logger).run(instances)
        self.last_success = self.clock()
        self.succeeded()
        if fallback:
            # At a start or reload the node comes back the same whether the
            # master answered or not: the sync started what the master wants
            # started; this starts the managers' groups too.
            self.start_all()
        self.record('online', errors)

    def failed(self, exc):
        now = self.clock()
        self.schedule.failed(now)
        self.logger.warning(
            'master not usable: %s; offline, next attempt in %d s', exc,
            round(self.schedule.next_attempt - now))

    def succeeded(self):
        if self.schedule.failures:
            self.logger.info('master answers again')
        self.schedule.succeeded(self.clock())

    def offline_start(self):
        """The offline start; alone, again about once a minute while
        offline."""
        self.policy.offline_start(self)

    def start_all(self):
        """Start every process of every group loaded from the include
        directory: the offline start, and the end of a start online."""
        if self.started_by_plugin:
            self.started_by_plugin = False  # once: the plugin did this one
            self.logger.info(PLUGIN_STARTED)
            return
        try:
            results = self.rpc.slapos.startAllPartitions()
        except RPC_ERRORS as exc:
            self.logger.error('startAllPartitions failed: %s',
                              describe_rpc_error(exc))
            return
        if not isinstance(results, list):
            results = []
        results = [r for r in results if isinstance(r, dict)
                   and {'name', 'group', 'status'} <= set(r)]
        line = summary(results, Ownership().name_owner)
        if line is not None:  # nothing to say when nothing was started
            self.logger.info('startAllPartitions: %s', line)
        for result in results:
            if result['status'] != Faults.SUCCESS:
                self.logger.error('could not start %s:%s: %s',
                                  result['group'], result['name'],
                                  result.get('description'))

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
                        describe_rpc_error(exc))
                    return None
                last = describe_rpc_error(exc)
            else:
                if isinstance(state_dir, str) and state_dir:
                    return state_dir
                last = f'bad answer {state_dir!r}'
            self.sleep(STATE_DIR_INTERVAL)
        self.logger.error('slapos.getStateDir() failed: %s; waiting for '
                          'the slapos RPC interface', last)
        return None

    def record(self, mode, errors, last_attempt=None):
        """Write what the listener knows for ``slapos.getSyncState()``.

        A broken computer_json stays in ``last_error`` as long as it is
        broken, whatever else happened. ``last_attempt``: when the master
        was last contacted, if not at this attempt.
        """
        if self.format is not None and self.format.error:
            errors = [self.format.error, *errors]
        state = SyncState(
            mode=mode,
            master_url=self.master.display_url if self.master else '',
            last_attempt=(0.0 if not self.master else self.last_attempt
                          if last_attempt is None else last_attempt),
            last_success=self.last_success,
            last_error=summarize(errors))
        try:
            write_sync_state(self.state_dir, state)
        except OSError as exc:
            self.logger.error('cannot write the sync state: %s', exc)


# command line

@dataclass(frozen=True)
class ListenerConfig:
    master_url: Optional[str]
    computer_id: Optional[str]
    cert_file: Optional[str]
    key_file: Optional[str]
    ca_file: Optional[str]
    timeout: float
    computer_json: Optional[str]
    slapgrid: bool = False
    phase: Optional[float] = None
    address_wait: float = ADDRESS_WAIT

    @property
    def states_are_the_nodes(self):
        """True when the offline start at supervisord's start and reload
        needs no master (``--slapgrid``, or no master URL), so that the
        plugin may run it inside supervisord (``offlinestart``); else the
        listener owns the states and syncs them first."""
        return self.slapgrid or not self.master_url


def float_in(low, high, low_included=True):
    """An argparse type: a number in ``[low, high)`` (``(low, high)``
    when not ``low_included``)."""
    bounds = f'{"[" if low_included else "("}{low:g}, {high:g})'

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'not a number: {text!r}')
        if not ((low <= value if low_included else low < value)
                and value < high):
            raise argparse.ArgumentTypeError(
                f'must be in {bounds}: {text!r}')
        return value
    return convert


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='supervisor-slapos-listener',
        description='supervisord event listener for a SlapOS node: starts '
                    'the started partitions when the master cannot be '
                    'reached, syncs the requested states when it can.')
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    parser.add_argument('--master-url', metavar='URL',
                        help="base URL of the SlapOS master's JSON API "
                             '(none: always offline)')
    parser.add_argument('--computer-id', metavar='ID',
                        help="this node's compute node reference, "
                             'e.g. COMP-1234')
    parser.add_argument('--cert-file', metavar='F',
                        help='client certificate for the master')
    parser.add_argument('--key-file', metavar='F',
                        help='key of the client certificate')
    parser.add_argument('--ca-file', metavar='F',
                        help="CA bundle to verify the master "
                             "(default: the system's)")
    parser.add_argument('--timeout', metavar='S', type=float_in(0, float('inf'), low_included=False),
                        default=DEFAULT_TIMEOUT,
                        help='seconds for one master request '
                             f'(default {DEFAULT_TIMEOUT:g})')
    parser.add_argument('--computer-json', metavar='F',
                        help='the JSON dump written by slapos node format '
                             '(computer_json in slapos.cfg), reported to '
                             'the master when it changes')
    parser.add_argument('--cfg', metavar='F',
                        help='a slapos.cfg: [slapos] master_url, '
                             'computer_id, cert_file, key_file and '
                             '[slapformat] computer_json are read from it '
                             '(options given here win)')
    parser.add_argument('--slapgrid', action='store_true',
                        help='slapgrid runs on this node: only the offline '
                             'start and the format report, never a start, '
                             'stop, destroy or state report')
    parser.add_argument('--address-wait', metavar='S',
                        type=float_in(0, float('inf')), default=ADDRESS_WAIT,
                        help="with --slapgrid: at the listener's start, wait "
                             "at most S seconds (default "
                             f"{ADDRESS_WAIT:g}; 0: no wait) until every "
                             "partition address of computer_json can be "
                             'bound on this host, then run the offline '
                             'start (and log the addresses still missing)')
    parser.add_argument('--phase', metavar='S', type=float_in(0, PERIOD),
                        help='seconds after each wall-clock minute at '
                             'which this node asks the master, in [0, 60) '
                             '(default: derived from the computer id)')
    return parser


# the options that --cfg may give, as slaposcfg.SlaposConfig names them
CFG_OPTIONS = ('master_url', 'computer_id', 'cert_file', 'key_file',
               'computer_json')


def apply_cfg(parser, args):
    """Fill the options not given on the command line from --cfg."""
    if not args.cfg:
        return
    try:
        cfg = read_slapos_cfg(args.cfg)
    except ValueError as exc:
        parser.error(f'--cfg: {exc}')
    for name in CFG_OPTIONS:
        if getattr(args, name) is None:
            setattr(args, name, getattr(cfg, name))


def parse_args(argv) -> ListenerConfig:
    """Parse and check the command line (argparse exits on errors)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    apply_cfg(parser, args)
    if args.master_url:
        scheme = urlsplit(args.master_url).scheme
        if scheme not in ('http', 'https'):
            parser.error('--master-url must be an http or https URL')
        if not args.computer_id:
            parser.error('--master-url needs --computer-id')
    if args.key_file and not args.cert_file:
        parser.error('--key-file needs --cert-file')
    return ListenerConfig(
        master_url=args.master_url or None, computer_id=args.computer_id,
        cert_file=args.cert_file, key_file=args.key_file,
        ca_file=args.ca_file, timeout=args.timeout,
        computer_json=args.computer_json, slapgrid=args.slapgrid,
        phase=args.phase, address_wait=args.address_wait)


def listener_from_args(argv, rpc=None, **kwargs) -> SlaposListener:
    """Build a listener from its command line: no contact with
    supervisord or the master; the only I/O is reading ``--cfg``'s file,
    if given."""
    config = parse_args(argv)
    master = None
    if config.master_url:
        master = MasterClient(config.master_url, config.computer_id,
                              cert_file=config.cert_file,
                              key_file=config.key_file,
                              ca_file=config.ca_file, timeout=config.timeout)
    return SlaposListener(rpc, master=master,
                          computer_json=config.computer_json,
                          slapgrid=config.slapgrid, phase=config.phase,
                          address_wait=config.address_wait, **kwargs)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parse_args(argv)  # --help and command-line errors need no supervisord
    if not os.environ.get('SUPERVISOR_SERVER_URL'):
        sys.stderr.write('supervisor-slapos-listener must be run by '
                         'supervisord as an event listener '
                         '(SUPERVISOR_SERVER_URL is not set)\n')
        sys.exit(1)
    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, 'reconfigure'):
            stream.reconfigure(encoding='utf-8')
    listener = listener_from_args(
        argv, rpc=childutils.getRPCInterface(os.environ))
    listener.run()
    # supervisord may be gone: do not fail again flushing stdout at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == '__main__':
    main()
