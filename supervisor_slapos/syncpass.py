"""One sync pass: the master's instance list, a plan, its apply, reports.

:func:`plan` and :func:`needed_call` are pure rules; :class:`SyncPass`
runs them against supervisord's ``slapos`` namespace and the master.
"""

import http.client
import xml.parsers.expat
import xmlrpc.client
from dataclasses import dataclass

from supervisor_slapos import naming
from supervisor_slapos.master import MasterError, MasterUnreachable

# Anything that can go wrong when talking to supervisord over XML-RPC: a
# fault, a protocol error, a socket error (supervisord restarting), a bad
# answer.
RPC_ERRORS = (
    xmlrpc.client.Error,
    OSError,
    http.client.HTTPException,
    xml.parsers.expat.ExpatError,
)

# the slapos method that brings a partition to each requested state
CALLS = {
    'started': 'startPartition',
    'stopped': 'stopPartition',
    'destroyed': 'destroyPartition',
}


def describe_rpc_error(exc):
    if isinstance(exc, xmlrpc.client.Fault):
        return exc.faultString
    return f'{type(exc).__name__}: {exc}'


@dataclass(frozen=True)
class Step:
    """Bring ``partition_id`` to ``state``, for the instances ``guids``."""

    partition_id: str
    state: str
    guids: tuple


def plan(instances):
    """The steps for an instance list, in partition order, and the
    errors of the entries that cannot be applied.

    Entries are grouped by partition. An invalid partition id is skipped.
    When two entries name one partition with different states, the
    partition is left as it is (like a partition the master does not
    list): no guess can be both safe to start and safe to destroy.
    """
    by_partition = {}
    for instance in instances:
        by_partition.setdefault(instance.partition_id, []).append(instance)
    steps, errors = [], []
    for partition_id in sorted(by_partition):
        entries = by_partition[partition_id]
        try:
            naming.partition_id(partition_id)
        except ValueError as exc:
            errors.append(
                f'skipping instance {entries[0].instance_guid!r}: {exc}'
            )
            continue
        states = sorted({entry.state for entry in entries})
        guids = tuple(entry.instance_guid for entry in entries)
        if len(states) > 1:
            errors.append(
                f'{partition_id}: conflicting states '
                f'{"/".join(states)} '
                f'for instances {", ".join(sorted(guids))}; '
                f'partition left as it is'
            )
            continue
        steps.append(Step(partition_id, states[0], guids))
    return steps, errors


def needed_call(partition_id, state, info):
    """The ``slapos`` method to call to bring partition ``partition_id`` to
    ``state`` given ``info`` (its getPartitionInfo, or {} when it has no
    file and no group), or None when it is there already.

    Started means ``P.conf`` there and every process of group ``P``
    RUNNING; a started partition with no group ``P`` loaded (an operator
    removed it) is not running.
    """
    processes = [p for p in info.get('processes') or [] if isinstance(p, dict)]
    own = [p for p in processes if p.get('group') == partition_id]
    if state == 'started':
        there = (
            info.get('state') == 'started'
            and own
            and all(p.get('statename') == 'RUNNING' for p in own)
        )
    elif state == 'stopped':
        there = info.get('state', 'stopped') == 'stopped' and not own
    else:
        there = not info.get('files') and not processes
    return None if there else CALLS[state]


def partition_infos(rpc):
    """``{partition id: getPartitionInfo}`` of every partition that has a
    file or a group, in one call (one getPartitionInfo per partition would
    cost supervisord a scan of every group each)."""
    infos = rpc.slapos.getAllPartitionInfo()
    if not isinstance(infos, list):
        return {}
    return {
        info['partition_id']: info
        for info in infos
        if isinstance(info, dict) and isinstance(info.get('partition_id'), str)
    }


class SyncPass:
    """Apply one instance list and report the states reached.

    ``rpc`` is supervisord's XML-RPC proxy, ``master`` the MasterClient,
    ``reported`` the :class:`~supervisor_slapos.reportedstates.
    ReportedStates`. An error on one partition is logged and the others go
    on; the errors of the pass are returned by :meth:`run`.
    """

    def __init__(self, rpc, master, reported, logger):
        self.rpc = rpc
        self.master = master
        self.reported = reported
        self.logger = logger
        self.errors = []
        self._reports_blocked = False

    def run(self, instances):
        self.errors = []
        self._reports_blocked = False
        steps, skipped = plan(instances)
        for message in skipped:
            self._error(message)
        try:
            infos = partition_infos(self.rpc)
        except RPC_ERRORS as exc:
            self._error(
                f'getAllPartitionInfo failed: '
                f'{describe_rpc_error(exc)}; sync skipped'
            )
            return self.errors
        self.reported.keep_only({i.instance_guid for i in instances})
        for step in steps:
            if not self._apply(step, infos.get(step.partition_id, {})):
                break
        return self.errors

    def _apply(self, step, info):
        """Apply and report one step; False when supervisord is gone."""
        partition_id, state = step.partition_id, step.state
        call = needed_call(partition_id, state, info)
        if call is not None:
            self.logger.info('%s: %s', partition_id, call)
            try:
                getattr(self.rpc.slapos, call)(partition_id)
            except RPC_ERRORS as exc:
                self._error(
                    f'{partition_id}: {state} failed: '
                    f'{describe_rpc_error(exc)}'
                )
                if isinstance(exc, xmlrpc.client.Fault):
                    return True
                self._error('supervisord does not answer: sync interrupted')
                return False
        if state == 'destroyed':
            self.reported.forget(step.guids)
            return True
        for guid in step.guids:
            if self.reported.get(guid) != state:
                self._report(guid, state)
        return True

    def _report(self, guid, state):
        if self._reports_blocked:
            return
        try:
            self.master.report_state(guid, state)
        except MasterUnreachable as exc:
            self._reports_blocked = True
            self._error(
                f'reporting {guid} {state}: {exc} '
                f'(reports postponed to the next sync)'
            )
            return
        except MasterError as exc:
            self._error(f'reporting {guid} {state}: {exc}')
            return
        self.reported.accepted(guid, state)
        self.logger.info('reported %s %s', guid, state)

    def _error(self, message):
        self.logger.error('%s', message)
        self.errors.append(message)
