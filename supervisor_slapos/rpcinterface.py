"""The ``slapos`` RPC namespace: partitions as include files, applied one
partition at a time, inside supervisord.

Every method reads only the files of the partition it names and changes
only that partition's groups; README.rst ("RPC methods") is the contract.
"""
import os

from supervisor.http import NOT_DONE_YET
from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import (RUNNING_STATES, SupervisorStates,
                               getProcessStateDescription)
from supervisor.xmlrpc import Faults as SupervisorFaults
from supervisor.options import make_namespec
from supervisor.xmlrpc import RPCError

from supervisor_slapos import (__version__, clients, fastspawn, linearread,
                               naming)
from supervisor_slapos.faults import (Faults, SlaposError,
                                      file_errors_as_faults)
from supervisor_slapos.files import (atomic_remove, atomic_write,
                                     make_dirs_durable, read_text,
                                     remove_stale_temporaries)
from supervisor_slapos.groupapply import GroupApply
from supervisor_slapos.jobs import (COMMITTED, poll_callbacks, queue_of,
                                   time_sliced)
from supervisor_slapos.partitionconf import generate_partition_conf
from supervisor_slapos.pluginconfig import parse_options
from supervisor_slapos.scopedapply import (ConfigError, Declarations,
                                           parse_partition, partition_files,
                                           read_partition_files)
from supervisor_slapos.syncstate import read_sync_state

API_VERSION = '1.0'

# startAllPartitions spawns for this long per turn of supervisord's loop,
# or until a client has something to say (clients.waiting): each turn costs
# supervisord a pass over every process and pipe, so fewer, longer slices
# bring the offline start close to autostart's time.
STARTALL_SLICE_SECONDS = 0.25
STARTALL_KEY = ''  # job key; partition ids are never empty


class SlaposNamespaceRPCInterface:
    """Computer partitions of a SlapOS node, managed inside supervisord."""

    def __init__(self, supervisord, options):
        """``options``: a ``pluginconfig.PluginOptions``."""
        self.supervisord = supervisord
        self.instance_root = options.instance_root
        self.include_dir = options.include_dir
        self.state_dir = options.state_dir
        self._ownership = options.ownership
        self._declarations = Declarations(
            self.include_dir, self._ownership, supervisord.options.configfile,
            supervisord.options.environ_expansions)
        self._core = SupervisorNamespaceRPCInterface(supervisord)
        self._jobs = queue_of(supervisord)
        self._apply = GroupApply(supervisord, self._core, self._loaded_groups,
                                 self._log)

    def _update(self, text):
        self.update_text = text
        if self.supervisord.get_state() < SupervisorStates.RUNNING:
            raise RPCError(SupervisorFaults.SHUTDOWN_STATE)

    # RPC API methods

    def getAPIVersion(self):
        """ Return the version of the slapos RPC API

        @return string version
        """
        self._update('getAPIVersion')
        return API_VERSION

    def getStateDir(self):
        """ Return the directory where the plugin and the listener keep
        their own state

        @return string path
        """
        self._update('getStateDir')
        return self.state_dir

    def getPartitionInfo(self, partition_id):
        """ Get the state, files, groups and processes of a partition

        @param string partition_id  Partition id, e.g. slappart0
        @return struct  {partition_id, state, files, groups, processes,
                        last_error}
        """
        self._update('getPartitionInfo')
        pid = self._partition_id(partition_id)
        with file_errors_as_faults():
            files = self._partition_files(pid)
            groups = self._loaded_groups(pid)
        return self._partition_info(pid, files, groups)

    def getAllPartitionInfo(self):
        """ Get getPartitionInfo() for every partition that owns a file
        in the include directory or a group loaded from one

        @return array  An array of partition info structs
        """
        self._update('getAllPartitionInfo')
        with file_errors_as_faults():
            files = self._declarations.of_all()
            groups = self._all_partition_groups(files)
        return [self._partition_info(pid, sorted(files.get(pid, ())),
                                     groups.get(pid, {}))
                for pid in sorted(set(files) | set(groups))]

    def startPartition(self, partition_id, wait=True):
        """ Write P.conf from etc/run and etc/service, apply the
        partition's files, and start every process of group P

        @param string partition_id  Partition id
        @param boolean wait  Wait for the processes to be started
        @return boolean  Always True unless error
        """
        self._update('startPartition')
        pid = self._partition_id(partition_id)
        return self._submit(pid, self._start_steps(pid), wait)

    def stopPartition(self, partition_id, wait=True):
        """ Stop and remove group P and delete P.conf; the manager groups
        and files of P stay

        @param string partition_id  Partition id
        @param boolean wait  Wait for the processes to be stopped
        @return boolean  Always True unless error
        """
        self._update('stopPartition')
        pid = self._partition_id(partition_id)
        return self._submit(pid, self._remove_file_steps(
            pid, naming.file_name(pid)), wait)

    def destroyPartition(self, partition_id, wait=True):
        """ Stop and remove every group of the partition and delete all
        of its files

        @param string partition_id  Partition id
        @param boolean wait  Wait for the processes to be stopped
        @return boolean  Always True unless error
        """
        self._update('destroyPartition')
        pid = self._partition_id(partition_id)
        return self._submit(pid, self._destroy_steps(pid), wait)

    def updatePartition(self, partition_id):
        """ Re-read the partition's files only and apply them as
        "supervisorctl update" would for its groups

        @param string partition_id  Partition id
        @return array  [added, changed, removed] group names
        """
        self._update('updatePartition')
        pid = self._partition_id(partition_id)
        return self._submit(pid, self._update_steps(pid), wait=True)

    def writeGroupConfig(self, partition_id, suffix, text):
        """ Validate text, write it as P-<suffix>.conf and apply it

        @param string partition_id  Partition id
        @param string suffix  Manager suffix
        @param string text  The file's content: [group:...] and
                            [program:...] sections owned by the partition
        @return array  [added, changed, removed] group names
        """
        self._update('writeGroupConfig')
        pid = self._partition_id(partition_id)
        sfx = self._suffix(suffix)
        if not isinstance(text, str):
            raise SlaposError(Faults.BAD_CONFIG, 'text must be a string')
        return self._submit(pid, self._write_group_steps(pid, sfx, text),
                            wait=True)

    def removeGroupConfig(self, partition_id, suffix, wait=True):
        """ Stop and remove the groups of P-<suffix>.conf, delete the file

        @param string partition_id  Partition id
        @param string suffix  Manager suffix
        @param boolean wait  Wait for the processes to be stopped
        @return boolean  Always True unless error
        """
        self._update('removeGroupConfig')
        pid = self._partition_id(partition_id)
        sfx = self._suffix(suffix)
        return self._submit(pid, self._remove_file_steps(
            pid, naming.file_name(pid, sfx)), wait)

    def startAllPartitions(self):
        """ Start every process that is not running in every group loaded
        from the include directory, a slice at a time so that supervisord
        keeps answering (the offline start); a partition that slapgrid is
        destroying gets only its prerm group started

        @return array  An array of process status info structs
        """
        self._update('startAllPartitions')
        return self._submit(STARTALL_KEY, self._start_all_steps(), wait=True)

    def getSyncState(self):
        """ What the listener last knew about the SlapOS master

        @return struct  {mode, master_url, last_attempt, last_success,
                        last_error}
        """
        self._update('getSyncState')
        return read_sync_state(self.state_dir).as_dict()

    # names and what is loaded

    def _partition_id(self, value):
        try:
            pid = naming.partition_id(value)
        except ValueError as e:
            raise SlaposError(Faults.INVALID_NAME, str(e))
        if self._ownership.is_node_id(pid):
            raise SlaposError(
                Faults.INVALID_NAME, f'{pid!r} is listed in node_files: '
                f'its files and groups are the node\'s, no partition\'s')
        return pid

    def _suffix(self, value):
        try:
            return naming.suffix(value)
        except ValueError as e:
            raise SlaposError(Faults.INVALID_NAME, str(e))

    # What a loaded group is, however and whenever it was loaded: with a
    # name of P's (naming.Ownership), it is P's when a file of P declares
    # it, else the node's when the node's configuration declares it, else
    # P's still (its file is gone: P's calls remove it, as "supervisorctl
    # update" would). Only files that may decide are read.

    def _loaded_groups(self, pid):
        """{name: group} of the loaded groups of ``pid`` (reads the files
        of ``pid`` only when one of its names is loaded, the node's only
        when one of those is declared by no file of ``pid``)."""
        groups = self.supervisord.process_groups
        names = self._ownership.names_of(pid, groups)
        if not names:
            return {}
        node = self._node_names(pid, names)
        return {name: groups[name] for name in names if name not in node}

    def _node_names(self, pid, names=None):
        """Those of ``names`` (default: the loaded names of ``pid``) that
        are the node's: no file of ``pid`` may declare them."""
        if names is None:
            names = self._ownership.names_of(
                pid, self.supervisord.process_groups)
        undeclared = set(names)
        if undeclared:
            undeclared -= self._declarations.of_partition(pid)
        if undeclared:
            undeclared &= self._declarations.of_node()
        return undeclared

    def _all_partition_groups(self, files, declared_only=False):
        """``{pid: {name: group}}`` of every loaded group of a partition;
        ``files`` is ``Declarations.of_all()``; ``declared_only``: without
        the groups whose file is gone."""
        declared, groups, undeclared = {}, {}, {}
        for name, group in self.supervisord.process_groups.items():
            pid = self._ownership.name_owner(name)
            if pid is None:
                continue
            if pid not in declared:
                declared[pid] = set().union(*files.get(pid, {}).values())
            if name in declared[pid]:
                groups.setdefault(pid, {})[name] = group
            elif not declared_only:
                undeclared[name] = pid, group
        node = self._declarations.of_node() if undeclared else ()
        for name, (pid, group) in undeclared.items():
            if name not in node:
                groups.setdefault(pid, {})[name] = group
        return groups

    def _destroying(self, pid):
        """Whether slapgrid is destroying ``pid``: its prerm manager keeps
        this file while the partition's prerm scripts run (one stat)."""
        return os.path.isfile(os.path.join(
            self.instance_root, pid, naming.DESTROY_WAIT_LIST))

    def _partition_files(self, pid):
        return partition_files(self.include_dir, pid, self._ownership)

    def _partition_info(self, pid, files, groups):
        processes = []
        for name in sorted(groups):
            members = groups[name].processes
            for process_name in sorted(members):
                process = members[process_name]
                processes.append({
                    'name': process_name, 'group': name, 'pid': process.pid,
                    'statename': getProcessStateDescription(
                        process.get_state())})
        started = naming.file_name(pid) in files
        return {'partition_id': pid,
                'state': 'started' if started else 'stopped',
                'files': list(files), 'groups': sorted(groups),
                'processes': processes,
                'last_error': self._jobs.last_error(pid)}

    def _path(self, basename):
        return os.path.join(self.include_dir, basename)

    def _log(self, message):
        self.supervisord.options.logger.info(f'slapos: {message}')

    # running operations

    def _submit(self, key, steps, wait):
        """Run ``steps`` as a job of ``key``: the answer now if there is
        one, else a deferred result that waits for it."""
        what = f'{self.update_text}({key})' if key else self.update_text
        job = self._jobs.submit(key, steps, what)
        answer = self._jobs.answer(key, job, wait)
        if answer is NOT_DONE_YET:
            return self._jobs.deferred(key, job, wait, self)
        return answer

    def _parse(self, pid, texts):
        """Parse ``texts``, the files ``pid`` is to have; call it before
        writing them (a loaded group that its files on disk do not declare
        may be the node's)."""
        try:
            return parse_partition(self.supervisord.options, self.include_dir,
                                   pid, texts, self._ownership,
                                   self._node_names(pid))
        except ConfigError as e:
            raise SlaposError(Faults.BAD_CONFIG, str(e))

    def _read(self, pid, skip=()):
        try:
            return read_partition_files(self.include_dir, pid, skip,
                                        self._ownership)
        except ConfigError as e:
            raise SlaposError(Faults.BAD_CONFIG, str(e))

    def _start_steps(self, pid):
        # checked when the job runs: a queued start may find it gone
        directory = os.path.join(self.instance_root, pid)
        if not os.path.isdir(directory):
            raise SlaposError(Faults.NO_PARTITION,
                              f'no directory {directory!r}')
        conf = naming.file_name(pid)
        texts = self._read(pid, skip=(conf,))
        text = generate_partition_conf(self.instance_root, pid)
        try:
            old_text = read_text(self._path(conf))
        except (OSError, UnicodeDecodeError):
            old_text = None  # broken: rewritten below
        texts[conf] = text
        parsed = self._parse(pid, texts)
        if text != old_text:
            atomic_write(self._path(conf), text)
        yield COMMITTED
        yield from self._apply.apply_steps(pid, parsed)
        group = self.supervisord.process_groups.get(pid)
        if group is not None:
            yield from self._apply.start_processes_steps(group)
        self._log(f'started partition {pid}')
        return True

    def _update_steps(self, pid):
        parsed = self._parse(pid, self._read(pid))
        changes = yield from self._apply.apply_steps(pid, parsed)
        return changes.as_list()

    def _write_group_steps(self, pid, sfx, text):
        name = naming.file_name(pid, sfx)
        texts = self._read(pid, skip=(name,))
        texts[name] = text
        parsed = self._parse(pid, texts)
        atomic_write(self._path(name), text)
        self._log(f'wrote {name}')
        changes = yield from self._apply.apply_steps(pid, parsed)
        return changes.as_list()

    # A stop, a destroy or a removal deletes its files first, then stops
    # the groups: once answered it is final, whatever comes (a reload, a
    # crash, the offline start), since nothing loads a file that is gone.

    def _remove_file_steps(self, pid, basename):
        """Delete one file, then stop and remove its groups."""
        names = self._groups_of_file(pid, basename)
        if atomic_remove(self._path(basename)):
            self._log(f'removed {basename}')
        yield COMMITTED
        yield from self._apply.remove_groups_steps(names)
        return True

    def _destroy_steps(self, pid):
        names = sorted(self._loaded_groups(pid))
        files = self._partition_files(pid)
        # P.conf goes last: until then the partition still reads as started.
        for basename in sorted(files,
                               key=lambda n: n == naming.file_name(pid)):
            atomic_remove(self._path(basename))
        yield COMMITTED
        yield from self._apply.remove_groups_steps(names)
        if files or names:
            self._log(f'destroyed partition {pid}')
        else:  # what supervisorctl slapos destroy says too
            self._log(f'destroyPartition({pid}): nothing to destroy '
                      f'(no file, no group)')
        return True

    def _groups_of_file(self, pid, basename):
        """Loaded groups of ``pid`` that one of its files declares (even
        a broken one or one gone: its headers and its own group); group P
        is P.conf's only."""
        names = set(self._declarations.of_file(basename))
        names.add(basename[:-len(naming.CONF_EXTENSION)])
        if basename != naming.file_name(pid):
            names.discard(pid)
        return sorted(names & set(self._loaded_groups(pid)))

    def _start_all_steps(self):
        groups = []
        for pid, named in self._all_partition_groups(
                self._declarations.of_all(), declared_only=True).items():
            if self._destroying(pid):
                # slapgrid wrote P.conf again for its prerm manager
                prerm = naming.group_name(pid, naming.PRERM_SUFFIX)
                named = {prerm: named[prerm]} if prerm in named else {}
            groups.extend(named.values())
        groups.sort()
        todo = [(group, process) for group in groups
                for process in sorted(group.processes.values())
                if process.get_state() not in RUNNING_STATES]
        callbacks = {}

        def spawn(item):
            group, process = item
            if not self._may_start_all(group, process):
                return None
            namespec = make_namespec(group.config.name, process.config.name)
            try:
                callback = fastspawn.start_process(self._core, process,
                                                   namespec)
            except RPCError as error:
                return item, error
            if callable(callback):
                callbacks[namespec] = callback
            return item, None

        sockets = self.supervisord.options.get_socket_map()
        spawned = yield time_sliced(
            todo, spawn, STARTALL_SLICE_SECONDS,
            interrupted=lambda: clients.waiting(sockets))
        failures = (yield poll_callbacks(callbacks)) if callbacks else {}
        results = []
        for (group, process), error in filter(None, spawned):
            namespec = make_namespec(group.config.name, process.config.name)
            if error is None and namespec in failures:
                if not self._may_start_all(group):
                    continue  # its partition's own job stopped it
                error = RPCError(SupervisorFaults.ABNORMAL_TERMINATION,
                                 failures[namespec])
            results.append({
                'name': process.config.name, 'group': group.config.name,
                'status': SupervisorFaults.SUCCESS if error is None
                else error.code,
                'description': 'OK' if error is None else error.text})
        self._log(f'startAllPartitions: {len(results)} processes, '
                  f'{sum(r["status"] != SupervisorFaults.SUCCESS for r in results)}'
                  f' failed')
        return results

    def _may_start_all(self, group, process=None):
        """Whether startAllPartitions may (still) start ``process`` of
        ``group``, one slice after it listed them: never in a partition
        that has a job of its own (its stop may be in flight), nor in a
        group since removed or replaced, nor a process started since."""
        name = group.config.name
        return (self.supervisord.process_groups.get(name) is group
                and not self._jobs.busy(self._ownership.name_owner(name))
                and (process is None
                     or process.get_state() not in RUNNING_STATES))


def make_slapos_rpcinterface(supervisord, **config):
    """supervisord's factory for ``[rpcinterface:slapos]``.

    Options (strings, see ``pluginconfig``): ``instance_root`` and
    ``include_dir`` (required), ``state_dir`` (default: the parent of
    ``include_dir``), ``node_files`` (default ``firewall dbus``),
    ``linear_reread`` (default true, see ``linearread``). A ValueError
    here makes supervisord exit with its message.
    """
    options = parse_options(config, supervisord.options.configfile,
                            supervisord.options.environ_expansions)
    for directory in (options.include_dir, options.state_dir):
        make_dirs_durable(directory)
        remove_stale_temporaries(directory)
    logger = supervisord.options.logger
    logger.info(f'slapos: supervisor_slapos {__version__} loaded '
                f'(RPC API {API_VERSION})')
    logger.info(f'slapos: {linearread.install(options.linear_reread)}')
    return SlaposNamespaceRPCInterface(supervisord, options)
