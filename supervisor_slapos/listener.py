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
states back. On each tick it syncs again; while the master does not
answer it retries with exponential backoff and jitter.

stdout carries the listener protocol only; everything else is logged on
stderr.
"""
import argparse
import http.client
import logging
import os
import random
import sys
import time
import xml.parsers.expat
import xmlrpc.client
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from supervisor import childutils

from supervisor_slapos import naming
from supervisor_slapos.files import read_json, write_json
from supervisor_slapos.formatreport import FormatReport
from supervisor_slapos.master import (
    DEFAULT_TIMEOUT, MasterClient, MasterError, MasterUnreachable)
from supervisor_slapos.slaposcfg import read_slapos_cfg
from supervisor_slapos.syncstate import (
    SyncState, read_sync_state, write_sync_state)

REPORTED_STATES_FILE = 'reported-states.json'

# Backoff while the master does not answer: 60 s, 120 s, ... up to 15 min,
# each multiplied by a random factor in [0.5, 1] so that the nodes of a
# cluster do not all come back at the same tick.
BACKOFF_BASE = 60.0
BACKOFF_CAP = 900.0
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
MAX_ERRORS_SHOWN = 5
SUCCESS = 80  # supervisor.xmlrpc.Faults.SUCCESS, in startAllProcesses results

# Anything that can go wrong when talking to supervisord over XML-RPC: a
# fault, a protocol error, a socket error (supervisord restarting), a bad
# answer.
RPC_ERRORS = (xmlrpc.client.Error, OSError, http.client.HTTPException,
              xml.parsers.expat.ExpatError)


def describe_rpc_error(exc):
    if isinstance(exc, xmlrpc.client.Fault):
        return exc.faultString
    return f'{type(exc).__name__}: {exc}'


def make_logger(stream):
    """A logger writing to ``stream`` only; not registered globally."""
    logger = logging.Logger('supervisor-slapos-listener', logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(
        '%(asctime)s %(levelname)s %(message)s'))
    logger.addHandler(handler)
    return logger


def summarize(errors):
    """The errors of one attempt as one line for ``last_error``."""
    shown = '; '.join(errors[:MAX_ERRORS_SHOWN])
    if len(errors) > MAX_ERRORS_SHOWN:
        shown += f' (and {len(errors) - MAX_ERRORS_SHOWN} more errors)'
    return shown


class SlaposListener:
    """One listener process.

    Every collaborator comes in explicitly: ``rpc`` is an XML-RPC proxy to
    supervisord (with the ``slapos`` namespace), ``master`` a
    :class:`MasterClient` or None (always offline), ``state_dir`` the
    directory of the listener's small state files (None: ask
    ``slapos.getStateDir()`` at start), ``clock``/``rng``/``sleep`` make
    the backoff deterministic in tests.
    """

    def __init__(self, rpc, master=None, state_dir=None, computer_json=None,
                 stdin=None, stdout=None, stderr=None, clock=time.time,
                 rng=None, sleep=time.sleep, backoff_base=BACKOFF_BASE,
                 backoff_cap=BACKOFF_CAP, slapgrid=False):
        self.rpc = rpc
        self.slapgrid = slapgrid
        self.master = master
        self.state_dir = state_dir
        self.computer_json = computer_json
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.clock = clock
        self.random = rng if rng is not None else random.Random()
        self.sleep = sleep
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.logger = make_logger(self.stderr)
        self.format = None
        self.reported = {}
        self._reports_blocked = False
        self.failures = 0
        self.next_attempt = 0.0
        self.start_attempt = None
        self.last_attempt = 0.0
        self.last_success = 0.0
        self.mode = 'unknown'

    # life cycle

    def run(self):
        """Start, then serve events until supervisord closes stdin."""
        self.start()
        self.runforever()

    def start(self):
        """Set up the state, then make the start attempt by itself: the
        SUPERVISOR_STATE_CHANGE_RUNNING event may never arrive."""
        if self.state_dir is None:
            self.state_dir = self._ask_state_dir()
        self.reported = self._load_reported()
        previous = read_sync_state(self.state_dir)
        self.last_success = previous.last_success
        self.mode = previous.mode
        if self.master is not None and self.computer_json:
            self.format = FormatReport(self.computer_json,
                                       self.master.computer_id,
                                       self.master.display_url,
                                       self.state_dir)
        self.logger.info(
            'started: master %s, state in %s',
            self.master.display_url if self.master else 'none (offline)',
            self.state_dir)
        self.start_attempt = self.clock()
        self._guarded(self.attempt, fallback=True)

    def runforever(self, test=False):
        """Serve events; return when supervisord goes away (end of
        stdin, or stdout closed)."""
        while True:
            try:
                event = self.wait()
            except (BrokenPipeError, ValueError):
                # ValueError: I/O operation on a closed file
                self.logger.info('supervisord went away: exiting')
                return
            if event is None:
                self.logger.info('stdin closed: exiting')
                return
            headers, payload = event
            self._guarded(self.handle_event, headers, payload)
            try:
                childutils.listener.ok(self.stdout)
            except (BrokenPipeError, ValueError):
                self.logger.info('supervisord went away: exiting')
                return
            if test:
                break

    def wait(self):
        """Send READY and read one event: ``(headers, payload)``, or None
        at end of input. A header line that does not parse gives an empty
        event (answered OK, like any other)."""
        childutils.listener.ready(self.stdout)
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
            return {}, ''
        payload = self.stdin.read(length) if length else ''
        return headers, payload

    def _guarded(self, function, *args, **kwargs):
        """Call ``function``; log any exception instead of dying."""
        try:
            function(*args, **kwargs)
        except Exception:
            self.logger.exception('unexpected error (the listener goes on)')

    # events

    def handle_event(self, headers, payload):
        name = headers.get('eventname', '')
        if name == 'SUPERVISOR_STATE_CHANGE_RUNNING':
            now = self.clock()
            if (self.start_attempt is not None
                    and 0 <= now - self.start_attempt < RUNNING_GRACE):
                return  # the start attempt already handled this start
            self.attempt(fallback=True)
        elif name.startswith('TICK_'):
            if self.clock() < self.next_attempt:
                return  # backing off
            self.attempt(fallback=False)
        elif name == 'REMOTE_COMMUNICATION':
            first_line = payload.split('\n', 1)[0]
            if first_line.strip() == f'type:{SYNC_COMM_TYPE}':
                self.attempt(fallback=False)

    # one attempt to reach the master

    def attempt(self, fallback):
        """Ask the master and sync; without a valid instance list, fall
        back to ``startAllPartitions()`` when ``fallback`` is true (start),
        and back off either way.

        With ``fallback``, no request is retried: the offline start waits
        for one failed request at most.
        """
        now = self.last_attempt = self.clock()
        if self.slapgrid:
            self.slapgrid_attempt(fallback)
            return
        if self.master is None:
            self._record('offline', [])
            if fallback:
                self.start_all()
            return
        errors = []
        try:
            self._send_format(errors, retry=not fallback)
            instances = self.master.list_instances(retry=not fallback)
        except MasterError as exc:
            self._back_off(now, exc)
            self._record('offline', [*errors, str(exc)])
            if fallback:
                self.start_all()
            return
        self._answered()
        errors += self.sync(instances)
        self.last_success = self.clock()
        if fallback:
            # At a start or reload the node comes back the same whether the
            # master answered or not: the sync started what the master wants
            # started; this starts the managers' groups too.
            self.start_all()
        self._record('online', errors)

    def slapgrid_attempt(self, fallback):
        """Beside slapgrid: the offline start (at once, at a start) and
        the format report, nothing else. The mode says whether the last
        contact with the master, the format report, succeeded."""
        if fallback:
            self.start_all()
        if self.master is None:
            self._record('offline', [])
            return
        errors = []
        try:
            sent = self._send_format(errors, retry=not fallback)
        except MasterUnreachable as exc:
            self._back_off(self.last_attempt, exc)
            self._record('offline', [str(exc)])
            return
        if sent is None:
            self._record(self.mode, errors)  # no contact this time
            return
        self._answered()
        if sent:
            self.last_success = self.clock()
        self._record('online' if sent else 'offline', errors)

    def _back_off(self, now, exc):
        self.failures += 1
        delay = min(self.backoff_cap,
                    self.backoff_base * 2 ** min(self.failures - 1, 30))
        delay *= self.random.uniform(0.5, 1.0)
        self.next_attempt = now + delay
        self.logger.warning('master not usable: %s; offline, next '
                            'attempt in %d s', exc, delay)

    def _answered(self):
        if self.failures:
            self.logger.info('master answers again')
        self.failures = 0
        self.next_attempt = 0.0

    def start_all(self):
        """Start every process of every group loaded from the include
        directory: the offline fallback, and the end of a start online."""
        try:
            results = self.rpc.slapos.startAllPartitions()
        except RPC_ERRORS as exc:
            self.logger.error('startAllPartitions failed: %s',
                              describe_rpc_error(exc))
            return
        if not isinstance(results, list):
            results = []
        failed = [r for r in results
                  if isinstance(r, dict) and r.get('status') != SUCCESS]
        self.logger.info('startAllPartitions: %d processes started, '
                         '%d failed', len(results) - len(failed), len(failed))
        for result in failed:
            self.logger.error('could not start %s:%s: %s',
                              result.get('group'), result.get('name'),
                              result.get('description'))

    def _send_format(self, errors, retry):
        """Send the format report if the dump changed since the master
        accepted it. MasterUnreachable goes up (no point listing then);
        any other master error is kept in ``errors`` and the sync goes on.
        Return True when the master accepted a report, False when it
        refused it, None when nothing was sent.
        """
        if self.format is None:
            return None
        partition_list, digest, changed = self.format.check()
        if self.format.error:
            if changed:
                self.logger.error('%s: not reporting the format until it '
                                  'changes', self.format.error)
            return None
        if changed:
            self.logger.info('computer_json %s is valid again',
                             self.computer_json)
        if partition_list is None:
            return None  # the master already has it
        try:
            self.master.report_format(partition_list, retry=retry)
        except MasterUnreachable:
            raise
        except MasterError as exc:
            self.logger.warning('format report refused: %s', exc)
            errors.append(f'format report: {exc}')
            return False
        self.logger.info('format report accepted (%d partitions)',
                         len(partition_list))
        try:
            self.format.accept(digest)
        except OSError as exc:
            self.logger.error('cannot remember the format report: %s', exc)
        return True

    # sync

    def sync(self, instances):
        """Apply the master's requested states; return the errors.

        Entries are grouped by partition. When two entries name one
        partition with different states, the partition is left as it is
        (like a partition the master does not list) and the conflict is
        logged: no guess can be both safe to start and safe to destroy.
        """
        by_partition = {}
        for instance in instances:
            by_partition.setdefault(instance.partition_id, []).append(
                instance)
        errors = []
        self._reports_blocked = False
        try:
            infos = self.partition_infos()
        except RPC_ERRORS as exc:
            self._error(errors, f'getAllPartitionInfo failed: '
                        f'{describe_rpc_error(exc)}; sync skipped')
            return errors
        before = dict(self.reported)
        listed = {instance.instance_guid for instance in instances}
        for guid in list(self.reported):
            if guid not in listed:
                del self.reported[guid]
        for pid in sorted(by_partition):
            entries = by_partition[pid]
            try:
                naming.partition_id(pid)
            except ValueError as exc:
                self._error(errors, f'skipping instance '
                            f'{entries[0].instance_guid!r}: {exc}')
                continue
            states = sorted({entry.state for entry in entries})
            if len(states) > 1:
                guids = ', '.join(sorted(e.instance_guid for e in entries))
                self._error(errors, f'{pid}: conflicting states '
                            f'{"/".join(states)} for instances {guids}; '
                            f'partition left as it is')
                continue
            try:
                reached = self.apply(pid, states[0], infos.get(pid, {}))
            except RPC_ERRORS as exc:
                self._error(errors, f'{pid}: {states[0]} failed: '
                            f'{describe_rpc_error(exc)}')
                if not isinstance(exc, xmlrpc.client.Fault):
                    self._error(errors, 'supervisord does not answer: '
                                'sync interrupted')
                    break
                continue
            for entry in entries:
                if reached == 'destroyed':
                    self.reported.pop(entry.instance_guid, None)
                elif self.reported.get(entry.instance_guid) != reached:
                    self._report(entry.instance_guid, reached, errors)
        if self.reported != before:
            self._save_reported()
        return errors

    def partition_infos(self):
        """``{partition id: getPartitionInfo}`` of every partition that
        has a file or a group, in one call (one getPartitionInfo per
        partition would cost supervisord a scan of every group each)."""
        infos = self.rpc.slapos.getAllPartitionInfo()
        if not isinstance(infos, list):
            return {}
        return {info['partition_id']: info for info in infos
                if isinstance(info, dict)
                and isinstance(info.get('partition_id'), str)}

    def apply(self, pid, state, info):
        """Bring partition ``pid``, described by ``info`` (its
        getPartitionInfo, or {} when it has no file and no group), to
        ``state``; return the state reached.

        Raises one of RPC_ERRORS when supervisord refuses or fails.
        """
        processes = [p for p in info.get('processes') or []
                     if isinstance(p, dict)]
        own = [p for p in processes if p.get('group') == pid]
        if state == 'started':
            if info.get('state') == 'started' and all(
                    p.get('statename') == 'RUNNING' for p in own):
                return 'started'
            self.logger.info('%s: starting', pid)
            self.rpc.slapos.startPartition(pid)
        elif state == 'stopped':
            if info.get('state', 'stopped') == 'stopped' and not own:
                return 'stopped'
            self.logger.info('%s: stopping', pid)
            self.rpc.slapos.stopPartition(pid)
        else:
            if not info.get('files') and not processes:
                return 'destroyed'
            self.logger.info('%s: destroying', pid)
            self.rpc.slapos.destroyPartition(pid)
        return state

    def _report(self, guid, state, errors):
        if self._reports_blocked:
            return
        try:
            self.master.report_state(guid, state)
        except MasterUnreachable as exc:
            self._reports_blocked = True
            self._error(errors, f'reporting {guid} {state}: {exc} '
                        f'(reports postponed to the next sync)')
            return
        except MasterError as exc:
            self._error(errors, f'reporting {guid} {state}: {exc}')
            return
        self.reported[guid] = state
        self.logger.info('reported %s %s', guid, state)

    def _error(self, errors, message):
        self.logger.error('%s', message)
        errors.append(message)

    # state files

    def _ask_state_dir(self):
        """``slapos.getStateDir()``, waiting a little for supervisord."""
        last = None
        for _ in range(STATE_DIR_ATTEMPTS):
            try:
                state_dir = self.rpc.slapos.getStateDir()
            except RPC_ERRORS as exc:
                last = describe_rpc_error(exc)
            else:
                if isinstance(state_dir, str) and state_dir:
                    return state_dir
                last = f'bad answer {state_dir!r}'
            self.sleep(STATE_DIR_INTERVAL)
        self.logger.error('slapos.getStateDir() failed: %s', last)
        raise SystemExit(1)

    def _load_reported(self):
        path = os.path.join(self.state_dir, REPORTED_STATES_FILE)
        try:
            raw = read_json(path)
        except (OSError, ValueError) as exc:
            self.logger.warning('ignoring unreadable %s: %s', path, exc)
            return {}
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.logger.warning('ignoring malformed %s', path)
            return {}
        return {guid: state for guid, state in raw.items()
                if isinstance(guid, str) and state in ('started', 'stopped')}

    def _save_reported(self):
        path = os.path.join(self.state_dir, REPORTED_STATES_FILE)
        try:
            write_json(path, self.reported)
        except OSError as exc:
            self.logger.error('cannot save %s: %s', path, exc)

    def _record(self, mode, errors):
        """Write what the listener knows for ``slapos.getSyncState()``.

        A broken computer_json stays in ``last_error`` as long as it is
        broken, whatever else happened.
        """
        self.mode = mode
        if self.format is not None and self.format.error:
            errors = [self.format.error, *errors]
        state = SyncState(
            mode=mode,
            master_url=self.master.display_url if self.master else '',
            last_attempt=self.last_attempt if self.master else 0.0,
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


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a number: {text!r}')
    if not 0 < value < float('inf'):
        raise argparse.ArgumentTypeError(f'must be positive: {text!r}')
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='supervisor-slapos-listener',
        description='supervisord event listener for a SlapOS node: starts '
                    'the started partitions when the master cannot be '
                    'reached, syncs the requested states when it can.')
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
    parser.add_argument('--timeout', metavar='S', type=_positive_float,
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
        computer_json=args.computer_json, slapgrid=args.slapgrid)


def listener_from_args(argv, rpc=None, **kwargs) -> SlaposListener:
    """Build a listener from its command line; no I/O happens here."""
    config = parse_args(argv)
    master = None
    if config.master_url:
        master = MasterClient(config.master_url, config.computer_id,
                              cert_file=config.cert_file,
                              key_file=config.key_file,
                              ca_file=config.ca_file, timeout=config.timeout)
    return SlaposListener(rpc, master=master,
                          computer_json=config.computer_json,
                          slapgrid=config.slapgrid, **kwargs)


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
