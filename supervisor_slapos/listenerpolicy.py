"""What the listener does on this node: its policy, which owns its sync.

- :class:`Alone`: the listener owns the partitions' states. At each
  attempt it sends the format report, asks the master for the instance
  list and syncs it (``syncpass.py``); while the master does not answer,
  it runs the offline start again about once a minute.
- :class:`BesideSlapgrid` (``--slapgrid``): slapgrid owns the states. At a
  start only the offline start, first waiting (bounded) for the
  partitions' addresses (``addresses.AddressWait``); at each attempt the
  format report, nothing else.

The listener (``listener.py``) carries the events and the schedule's
moments to its policy: ``before_offline_start()`` and ``attempt()`` at a
start, ``attempt()`` when the schedule says so or a sync is asked for,
``offline_start()`` at the schedule's moment for it. The policy decides;
the offline start, what the schedule hears and the sync state go through
:class:`~supervisor_slapos.listeneractions.ListenerActions`, the sync of
the states through ``syncpass.SyncPass``, and the format report and the
reported states keep their own files (``formatreport``,
``reportedstates``).
"""

import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from supervisor_slapos.addresses import (
    ADDRESS_WAIT,
    AddressWait,
    addresses_to_wait_for,
    can_bind,
)
from supervisor_slapos.formatreport import NOT_SENT, FormatReport
from supervisor_slapos.master import MasterError, MasterUnreachable
from supervisor_slapos.reportedstates import ReportedStates
from supervisor_slapos.syncpass import SyncPass
from supervisor_slapos.syncstate import (
    NO_CONTACT_BESIDE_SLAPGRID,
    read_sync_state,
)


@dataclass(frozen=True)
class ListenerParts:
    """What a policy works with, once the listener knows its state
    directory: supervisord's ``rpc``, the ``master`` client (None: no
    master), the listener's ``logger``, ``clock`` and ``sleep``."""

    rpc: Any
    master: Any
    state_dir: str
    computer_json: Optional[str]
    logger: Any
    clock: Callable[[], float]
    sleep: Callable[[float], None]


class Policy:
    """What both policies share: the format report (with a master and a
    computer_json), the actions, and a record that keeps a broken
    computer_json in ``last_error`` as long as it is broken."""

    label = ''

    def __init__(self):
        self.actions = None
        self.parts = None
        self.format = None

    def begin(self, actions, parts):
        """The listener begins: ``actions`` (``ListenerActions``) and
        ``parts`` (:class:`ListenerParts`)."""
        self.actions = actions
        self.parts = parts
        if parts.master is not None and parts.computer_json:
            self.format = FormatReport(
                parts.computer_json,
                parts.master,
                parts.state_dir,
                parts.logger,
            )

    def before_offline_start(self):
        """Nothing to wait for."""

    def record(self, mode, errors, last_attempt=None):
        if self.format is not None and self.format.error:
            errors = [self.format.error, *errors]
        self.actions.record(mode, errors, last_attempt)


class Alone(Policy):
    """The listener owns the partitions' states: it syncs them with the
    master and, while the master does not answer, runs the offline start
    again about once a minute."""

    def __init__(self):
        super().__init__()
        self.reported = None

    def begin(self, actions, parts):
        super().begin(actions, parts)
        self.reported = ReportedStates(parts.state_dir, parts.logger).load()

    def attempt(self, fallback):
        """The format report, then the instance list, synced. Without a
        valid instance list, run the offline start when ``fallback`` is
        true (a start) or when the master was answering until now."""
        master = self.parts.master
        if master is None:
            self.record('offline', [])
            if fallback:
                self.offline_start()
            return
        sent = NOT_SENT
        try:
            if self.format is not None:
                sent = self.format.send()
            instances = master.list_instances()
        except MasterError as exc:
            was_online = not self.actions.offline_start_repeats()
            self.actions.master_failed(exc)
            self.record('offline', [*sent.errors(), str(exc)])
            if fallback or was_online:
                self.offline_start()
            return
        errors = sent.errors() + SyncPass(
            self.parts.rpc, master, self.reported, self.parts.logger
        ).run(instances)
        self.actions.master_answered(synced=True)
        if fallback:
            # At a start or reload the node comes back the same whether the
            # master answered or not: the sync started what the master wants
            # started; this starts the managers' groups too.
            self.actions.start_all()
        self.record('online', errors)

    def offline_start(self):
        """The offline start, again in about a minute while offline."""
        self.actions.offline_started()
        self.actions.start_all()


class BesideSlapgrid(Policy):
    """slapgrid owns the partitions' states (``--slapgrid``): only the
    offline start at a start, first waiting, at most ``address_wait``
    seconds, until ``bindable`` (see ``addresses.py``) says that every
    address of computer_json exists on the host; and the format report."""

    label = ' (beside slapgrid)'

    def __init__(self, address_wait=ADDRESS_WAIT, bindable=can_bind):
        super().__init__()
        self.address_wait = address_wait
        self.bindable = bindable
        # the format report sent while the offline start waits for the
        # addresses: (thread, outcome), until the attempt takes it
        self._early_report = None

    def before_offline_start(self):
        """Wait (bounded, sleeping between two tries) for the partitions'
        numeric addresses; the format report, which needs no address, goes
        out meanwhile."""
        parts = self.parts
        if not (parts.computer_json and self.address_wait > 0):
            return

        def log(level, text):
            parts.logger.log(level, text)

        wait = AddressWait(
            addresses_to_wait_for(parts.computer_json, log),
            self.address_wait,
            parts.clock,
            log,
            self.bindable,
        )
        wait.begin()
        if not wait.done:
            self._send_report_meanwhile()
        while not wait.done:
            seconds = wait.seconds_to_next_try()
            if seconds > 0:
                parts.sleep(seconds)
            wait.step()

    def _send_report_meanwhile(self):
        """Send the format report in a thread of its own while the
        offline start waits for the addresses (the attempt that follows
        takes its outcome: ``_format_sent``)."""
        if self.format is None:
            return
        outcome = {}

        def send():
            try:
                outcome['sent'] = self.format.send()
            except Exception as exc:  # the attempt raises it in its place
                outcome['error'] = exc

        thread = threading.Thread(
            target=send, name='format-report', daemon=True
        )
        thread.start()
        self._early_report = thread, outcome

    def _format_sent(self):
        """``format.send()``, or the outcome of the report sent during the
        address wait."""
        if self._early_report is None:
            return self.format.send()
        thread, outcome = self._early_report
        self._early_report = None
        thread.join()
        if 'error' in outcome:
            raise outcome['error']
        return outcome['sent']

    def attempt(self, fallback):
        """The offline start (at once, at a start) and the format report,
        nothing else. The mode says whether the last contact with the
        master, the format report, succeeded, and ``last_attempt`` is when
        that contact was: the listener contacts the master only when there
        is a report to send. Without computer_json it never does, and
        records so."""
        if fallback:
            self.actions.start_all()
        if self.format is None:
            self.record(
                'unknown', [NO_CONTACT_BESIDE_SLAPGRID], last_attempt=0.0
            )
            return
        try:
            sent = self._format_sent()
        except MasterUnreachable as exc:
            self.actions.master_failed(exc)
            self.record('offline', [str(exc)])
            return
        if not sent.contacted:
            self.actions.master_answered()
            previous = read_sync_state(self.parts.state_dir)
            self.record(previous.mode, [], last_attempt=previous.last_attempt)
            return
        self.actions.master_answered(synced=sent.accepted)
        self.record('online' if sent.accepted else 'offline', sent.errors())

    def offline_start(self):
        """Only at a start: slapgrid's own pass starts what is not
        running."""
        self.actions.start_all()
