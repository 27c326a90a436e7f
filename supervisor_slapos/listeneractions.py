"""What a policy of the listener may do, and nothing else.

The listener's policy (``listenerpolicy.py``) decides; it acts through a
:class:`ListenerActions`, the narrow set of the listener's effects: start
every partition's processes (``slapos.startAllPartitions()``), tell the
listener's schedule how the master answered or that an offline start ran,
and record what the listener knows for ``slapos.getSyncState()``. Of the
listener it changes only its schedule (through the schedule's own
methods), and calls nothing back into it.
"""

from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.ownership import partition_of_name
from supervisor_slapos.startresults import shorten, summary
from supervisor_slapos.syncpass import RPC_ERRORS, describe_rpc_error
from supervisor_slapos.syncstate import (
    SyncState,
    read_sync_state,
    write_sync_state,
)

# logged where the listener leaves the offline start to the plugin
PLUGIN_STARTED = (
    'offline start: left to the plugin, which ran it inside supervisord'
)


def summarize(errors):
    """The errors of one attempt as one line for ``last_error``."""
    return shorten(errors, ' errors', '; ')


class ListenerActions:
    """The effects of one listener, once its state directory is known.

    ``rpc`` is supervisord's XML-RPC proxy, ``schedule`` the listener's
    :class:`~supervisor_slapos.schedule.Schedule`, ``master_url`` the
    master's URL as it may be shown ('' without a master).
    ``started_by_plugin``: the plugin ran this start's offline start
    (``slapos.getOfflineStart()``), so the first ``start_all`` only says
    so.
    """

    def __init__(
        self,
        rpc,
        schedule,
        logger,
        clock,
        state_dir,
        master_url,
        started_by_plugin=False,
    ):
        self._rpc = rpc
        self._schedule = schedule
        self._logger = logger
        self._clock = clock
        self._state_dir = state_dir
        self._master_url = master_url
        self._started_by_plugin = started_by_plugin
        self._last_attempt = 0.0
        self._last_success = read_sync_state(state_dir).last_success

    # the schedule

    def begin_attempt(self):
        """An attempt to reach the master begins (the listener's call)."""
        self._last_attempt = self._clock()
        self._schedule.attempting(self._last_attempt)

    def master_failed(self, exc):
        """The master was not usable: back off, and say when it is asked
        again."""
        now = self._clock()
        self._schedule.failed(now)
        self._logger.warning(
            'master not usable: %s; offline, next attempt in %d s',
            exc,
            round(self._schedule.next_attempt - now),
        )

    def master_answered(self, synced=False):
        """The master answered (``synced``: and this node is in sync with
        it, the ``last_success`` of the sync state)."""
        if self._schedule.failures:
            self._logger.info('master answers again')
        now = self._clock()
        if synced:
            self._last_success = now
        self._schedule.succeeded(now)

    def offline_start_repeats(self):
        """True while the offline start runs again about once a minute
        (since the master last answered)."""
        return self._schedule.next_offline_start is not None

    def offline_started(self):
        """An offline start ran: the next one in about a minute."""
        self._schedule.offline_started(self._clock())

    # supervisord

    def start_all(self):
        """Start every process of every group loaded from the include
        directory: the offline start, and the end of a start online."""
        if self._started_by_plugin:
            self._started_by_plugin = False  # once: the plugin did this one
            self._logger.info(PLUGIN_STARTED)
            return
        try:
            results = self._rpc.slapos.startAllPartitions()
        except RPC_ERRORS as exc:
            self._logger.error(
                'startAllPartitions failed: %s', describe_rpc_error(exc)
            )
            return
        if not isinstance(results, list):
            results = []
        results = [
            r
            for r in results
            if isinstance(r, dict) and {'name', 'group', 'status'} <= set(r)
        ]
        line = summary(results, partition_of_name)
        if line is not None:  # nothing to say when nothing was started
            self._logger.info('startAllPartitions: %s', line)
        for result in results:
            if result['status'] != SupervisorFaults.SUCCESS:
                self._logger.error(
                    'could not start %s:%s: %s',
                    result['group'],
                    result['name'],
                    result.get('description'),
                )

    # the sync state

    def record(self, mode, errors, last_attempt=None):
        """Write what the listener knows for ``slapos.getSyncState()``.
        ``last_attempt``: when the master was last contacted, if not at
        this attempt."""
        state = SyncState(
            mode=mode,
            master_url=self._master_url,
            last_attempt=(
                0.0
                if not self._master_url
                else self._last_attempt
                if last_attempt is None
                else last_attempt
            ),
            last_success=self._last_success,
            last_error=summarize(errors),
        )
        try:
            write_sync_state(self._state_dir, state)
        except OSError as exc:
            self._logger.error('cannot write the sync state: %s', exc)
