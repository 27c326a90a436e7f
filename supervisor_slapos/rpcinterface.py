"""The ``slapos`` RPC namespace: partitions as include files, applied one
partition at a time, inside supervisord.

Each method checks its arguments and submits the operation
(``operations``) to the partition's job queue (``jobs``). A partition's
method reads only the files of the partition it names (and, when one of
its loaded names is declared by none of them, the node's configuration:
whose the group is) and changes only that partition's groups;
``getAllPartitionInfo`` and ``startAllPartitions`` read every partition
file (the declarations of unchanged files are cached). README.rst ("RPC
methods") is the contract.
"""

from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import SupervisorStates, getProcessStateDescription
from supervisor.xmlrpc import Faults as SupervisorFaults
from supervisor.xmlrpc import RPCError

from supervisor_slapos import (
    __version__,
    descriptors,
    incrementalread,
    internals,
    linearread,
    naming,
    offlinestart,
)
from supervisor_slapos.faults import Faults, SlaposError, file_errors_as_faults
from supervisor_slapos.files import make_dirs_durable, remove_stale_temporaries
from supervisor_slapos.jobs import STARTALL_KEY, queue_of
from supervisor_slapos.operations import Operations
from supervisor_slapos.ownership import file_name
from supervisor_slapos.pluginconfig import parse_options
from supervisor_slapos.syncstate import read_sync_state

API_VERSION = '1.0'


class SlaposNamespaceRPCInterface:
    """Computer partitions of a SlapOS node, managed inside supervisord."""

    def __init__(self, supervisord, options):
        """``options``: a ``pluginconfig.PluginOptions``."""
        self.supervisord = supervisord
        self.state_dir = options.state_dir
        self._node_ids = options.ownership.node_ids
        self._jobs = queue_of(supervisord)
        self._operations = Operations(
            supervisord,
            SupervisorNamespaceRPCInterface(supervisord),
            options,
            self._jobs,
        )
        self._offline_start = offlinestart.install(
            supervisord,
            self._jobs,
            self._operations.start_all,
            options.instant_start,
        )

    def _update(self, text):
        self.update_text = text
        if self.supervisord.get_state() < SupervisorStates.RUNNING:
            raise RPCError(SupervisorFaults.SHUTDOWN_STATE)

    # RPC API methods

    def getAPIVersion(self):
        """Return the version of the slapos RPC API

        @return string version
        """
        self._update('getAPIVersion')
        return API_VERSION

    def getPluginVersion(self):
        """Return the version of supervisor_slapos that supervisord
        loaded (after an upgrade, the one installed may differ until
        supervisord restarts)

        @return string version
        """
        self._update('getPluginVersion')
        return __version__

    def getStateDir(self):
        """Return the directory where the plugin and the listener keep
        their own state

        @return string path
        """
        self._update('getStateDir')
        return self.state_dir

    def getPartitionInfo(self, partition_id):
        """Get the state (started, stopped, or destroying while
        slapgrid's wait list is in the partition's directory), files,
        groups and processes of a partition

        @param string partition_id  Partition id, e.g. slappart0
        @return struct  {partition_id, state, files, groups, processes,
                        last_error}
        """
        self._update('getPartitionInfo')
        partition_id = self._checked_id(partition_id)
        with file_errors_as_faults():
            view = self._operations.partitions.view(partition_id)
        return self._partition_info(partition_id, view.files, view.loaded)

    def getAllPartitionInfo(self):
        """Get getPartitionInfo() for every partition that owns a file
        in the include directory or a group loaded from one

        @return array  An array of partition info structs
        """
        self._update('getAllPartitionInfo')
        partitions = self._operations.partitions
        with file_errors_as_faults():
            files = partitions.declarations.of_all()
            groups = partitions.partition_groups(files)
        return [
            self._partition_info(
                partition_id,
                sorted(files.get(partition_id, ())),
                groups.get(partition_id, {}),
            )
            for partition_id in sorted(set(files) | set(groups))
        ]

    def startPartition(self, partition_id, wait=True):
        """Write P.conf from etc/run and etc/service, apply the
        partition's files, and start every process of group P

        @param string partition_id  Partition id
        @param boolean wait  Wait for the processes to be started
        @return boolean  Always True unless error
        """
        self._update('startPartition')
        partition_id = self._checked_id(partition_id)
        return self._jobs.run(
            'startPartition',
            partition_id,
            self._operations.start(partition_id),
            wait,
        )

    def stopPartition(self, partition_id, wait=True):
        """Stop and remove group P and delete P.conf; the manager groups
        and files of P stay

        @param string partition_id  Partition id
        @param boolean wait  Wait for the processes to be stopped
        @return boolean  Always True unless error
        """
        self._update('stopPartition')
        partition_id = self._checked_id(partition_id)
        return self._jobs.run(
            'stopPartition',
            partition_id,
            self._operations.stop(partition_id),
            wait,
        )

    def destroyPartition(self, partition_id, wait=True):
        """Stop and remove every group of the partition and delete all
        of its files

        @param string partition_id  Partition id
        @param boolean wait  Wait for the processes to be stopped
        @return boolean  Always True unless error
        """
        self._update('destroyPartition')
        partition_id = self._checked_id(partition_id)
        return self._jobs.run(
            'destroyPartition',
            partition_id,
            self._operations.destroy(partition_id),
            wait,
        )

    def updatePartition(self, partition_id):
        """Re-read the partition's files only and apply them as
        "supervisorctl update" would for its groups

        @param string partition_id  Partition id
        @return array  [added, changed, removed] group names
        """
        self._update('updatePartition')
        partition_id = self._checked_id(partition_id)
        return self._jobs.run(
            'updatePartition',
            partition_id,
            self._operations.update(partition_id),
            True,
        )

    def writeGroupConfig(self, partition_id, suffix, text):
        """Validate text, write it as P-<suffix>.conf and apply it

        @param string partition_id  Partition id
        @param string suffix  Manager suffix
        @param string text  The file's content: [group:...] and
                            [program:...] sections owned by the partition
        @return array  [added, changed, removed] group names
        """
        self._update('writeGroupConfig')
        partition_id = self._checked_id(partition_id)
        suffix = self._checked_suffix(suffix)
        if not isinstance(text, str):
            raise SlaposError(Faults.BAD_CONFIG, 'text must be a string')
        return self._jobs.run(
            'writeGroupConfig',
            partition_id,
            self._operations.write_group(partition_id, suffix, text),
            True,
        )

    def removeGroupConfig(self, partition_id, suffix, wait=True):
        """Stop and remove the groups of P-<suffix>.conf, delete the file

        @param string partition_id  Partition id
        @param string suffix  Manager suffix
        @param boolean wait  Wait for the processes to be stopped
        @return boolean  Always True unless error
        """
        self._update('removeGroupConfig')
        partition_id = self._checked_id(partition_id)
        suffix = self._checked_suffix(suffix)
        return self._jobs.run(
            'removeGroupConfig',
            partition_id,
            self._operations.remove_group(partition_id, suffix),
            wait,
        )

    def startAllPartitions(self):
        """Start every process that is not running in every group loaded
        from the include directory, a slice at a time so that supervisord
        keeps answering (the offline start); a partition that slapgrid is
        destroying gets only its prerm group started

        @return array  An array of process status info structs
        """
        self._update('startAllPartitions')
        return self._jobs.run(
            'startAllPartitions',
            STARTALL_KEY,
            self._operations.start_all(),
            True,
        )

    def getOfflineStart(self):
        """Who runs the offline start at supervisord's start and reload:
        the plugin, inside supervisord, when the listener's command line
        says the partitions' states are the node's own (--slapgrid, or no
        master URL), else the listener; and how far the plugin's is

        @return struct  {by: plugin or listener, state: '' (not begun or
                        the listener's), waiting for addresses, starting
                        or done}
        """
        self._update('getOfflineStart')
        return self._offline_start.as_dict()

    def getSyncState(self):
        """What the listener last knew about the SlapOS master

        @return struct  {mode, master_url, last_attempt, last_success,
                        last_error}
        """
        self._update('getSyncState')
        return read_sync_state(self.state_dir).as_dict()

    # checks

    def _checked_id(self, value):
        """``value`` if it is a partition's id, else an INVALID_NAME
        fault (a node_files id names the node's files and groups)."""
        try:
            return naming.partition_id(value, self._node_ids)
        except ValueError as e:
            raise SlaposError(Faults.INVALID_NAME, str(e)) from e

    def _checked_suffix(self, value):
        try:
            return naming.suffix(value)
        except ValueError as e:
            raise SlaposError(Faults.INVALID_NAME, str(e)) from e

    def _partition_info(self, partition_id, files, groups):
        processes = []
        for name in sorted(groups):
            members = groups[name].processes
            for process_name in sorted(members):
                process = members[process_name]
                processes.append(
                    {
                        'name': process_name,
                        'group': name,
                        'pid': process.pid,
                        'statename': getProcessStateDescription(
                            process.get_state()
                        ),
                    }
                )
        if self._operations.destroying(partition_id):
            state = 'destroying'  # slapgrid's prerm manager is at work
        elif file_name(partition_id) in files:
            state = 'started'
        else:
            state = 'stopped'
        return {
            'partition_id': partition_id,
            'state': state,
            'files': list(files),
            'groups': sorted(groups),
            'processes': processes,
            'last_error': self._jobs.last_error(partition_id),
        }


def make_slapos_rpcinterface(supervisord, **config):
    """supervisord's factory for ``[rpcinterface:slapos]``.

    Options (strings, see ``pluginconfig``): ``instance_root`` and
    ``include_dir`` (required), ``state_dir`` (default: the parent of
    ``include_dir``), ``node_files`` (default ``firewall dbus``),
    ``linear_reread`` (default true, see ``linearread``),
    ``incremental_reread`` (default true, see ``incrementalread``),
    ``instant_start`` (default true, see ``offlinestart``). A ValueError
    here makes supervisord exit with its message (said first in one line:
    supervisor logs the traceback after it).
    """
    try:
        options = parse_options(
            config,
            supervisord.options.configfile,
            supervisord.options.environ_expansions,
        )
    except ValueError as e:
        supervisord.options.logger.critical(f'slapos: not loaded: {e}')
        raise
    for directory in (options.include_dir, options.state_dir):
        make_dirs_durable(directory)
        remove_stale_temporaries(directory)
    logger = supervisord.options.logger
    logger.info(
        f'slapos: supervisor_slapos {__version__} loaded '
        f'(RPC API {API_VERSION})'
    )
    logger.info(f'slapos: {linearread.install(options.linear_reread)}')
    logger.info(
        'slapos: '
        + incrementalread.install(
            options.linear_reread, options.incremental_reread
        )
    )
    # at supervisord's start this runs before it spawns anything
    enough, sentence = descriptors.raise_open_files()
    (logger.info if enough else logger.warn)(f'slapos: {sentence}')
    if internals.READ_CONFIG_REASON is not None:
        logger.warn(
            f'slapos: a partition\'s files are read as '
            f'supervisor 4.2.5 and 4.3.0 read them, which this '
            f'supervisor may not: {internals.READ_CONFIG_REASON}'
        )
    if internals.GROUP_CONFIGS_REASON is not None:
        logger.warn(
            f'slapos: supervisord\'s own view of the configuration '
            f'is not kept in step with the partitions\' groups '
            f'(reloadConfig may list them as changed): '
            f'{internals.GROUP_CONFIGS_REASON}'
        )
    interface = SlaposNamespaceRPCInterface(supervisord, options)
    reason = internals.spare_in_start_all(
        supervisord, interface._operations.spared_groups
    )
    if reason is not None:
        logger.warn(
            f'slapos: supervisor.startAllProcesses (slapgrid\'s '
            f'offline pass) may start the services of a partition '
            f'being destroyed: {reason}'
        )
    return interface
