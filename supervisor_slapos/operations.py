"""The partition operations, each one a job's steps (``jobs.py``), inside
supervisord.

``start``, ``stop``, ``destroy``, ``update``, ``write_group``,
``remove_group`` and ``start_all`` are step generators: each validates
everything it reads before its first write (a refused call changes
nothing), writes or removes its files, then changes the loaded groups
through ``groupapply``. Those whose answer may come before the groups
are changed (``start``, ``stop``, ``destroy``, ``remove_group``: their
``wait`` argument) yield ``COMMITTED`` once their files are written or
removed; ``update`` and ``write_group`` answer with the changes, and
``start_all`` with what it started. A partition's operation makes its
``partitionview.PartitionView`` once and hands it down to the parser
(``partitionparse``) and to ``groupapply``; the operations know nothing
of the RPC interface that submits them.
"""

import os
import time

from supervisor.options import make_namespec
from supervisor.states import RUNNING_STATES
from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos import clients, floorspawn, internals
from supervisor_slapos.faults import Faults, SlaposError, as_fault
from supervisor_slapos.files import atomic_remove, atomic_write, read_text
from supervisor_slapos.groupapply import GroupApply
from supervisor_slapos.jobs import COMMITTED, poll_callbacks, time_sliced
from supervisor_slapos.ownership import (
    DESTROY_WAIT_LIST,
    PRERM_SUFFIX,
    file_name,
    group_name,
)
from supervisor_slapos.partitionconf import generate_partition_conf
from supervisor_slapos.partitionparse import (
    parse_partition,
    read_partition_files,
)
from supervisor_slapos.partitionview import Partitions
from supervisor_slapos.startresults import failure_text, summary

# start_all says how far it is at most this often (a long offline start
# is thousands of spawns).
STARTALL_PROGRESS_SECONDS = 5.0
# start_all spawns for this long per turn of supervisord's loop, or until
# a client has something to say (clients.waiting): each turn costs
# supervisord a pass over every process and pipe, so fewer, longer slices
# bring the offline start close to autostart's time.
STARTALL_SLICE_SECONDS = 0.25


class Progress:
    """Says, at most every STARTALL_PROGRESS_SECONDS, how many of
    ``total`` processes a start has spawned so far."""

    def __init__(self, total, log, clock=time.monotonic):
        self.total = total
        self.done = 0
        self._log = log
        self._clock = clock
        self._next = clock() + STARTALL_PROGRESS_SECONDS

    def one_more(self):
        self.done += 1
        if self._clock() >= self._next:
            self._next = self._clock() + STARTALL_PROGRESS_SECONDS
            self._log(
                f'startAllPartitions: {self.done} of {self.total} '
                f'processes spawned so far'
            )


class Operations:
    """The partitions of one supervisord: their operations, and what of
    theirs is loaded.

    ``core`` is supervisor's own RPC interface (its startProcess and
    stopProcess wait the way supervisor does); ``options`` a
    ``pluginconfig.PluginOptions``; ``jobs`` the ``jobs.JobQueue`` the
    operations run in (``start_all`` leaves alone a partition that has a
    job of its own).
    """

    def __init__(self, supervisord, core, options, jobs):
        self.supervisord = supervisord
        self.instance_root = options.instance_root
        self.include_dir = options.include_dir
        self.ownership = options.ownership
        self.partitions = Partitions(
            supervisord,
            self.include_dir,
            self.ownership,
            supervisord.options.configfile,
            supervisord.options.environ_expansions,
        )
        self._core = core
        self._jobs = jobs
        self._apply = GroupApply(supervisord, core, self._log)

    # the operations

    def start(self, partition_id):
        """Write P.conf from etc/run and etc/service, apply the
        partition's files, start every process of group P."""
        # checked when the job runs: a queued start may find it gone
        directory = os.path.join(self.instance_root, partition_id)
        if not os.path.isdir(directory):
            raise SlaposError(
                Faults.NO_PARTITION, f'no directory {directory!r}'
            )
        view = self.partitions.view(partition_id)
        conf = view.main_file
        texts = read_partition_files(view, skip=(conf,))
        text = generate_partition_conf(self.instance_root, partition_id)
        try:
            old_text = read_text(view.path(conf))
        except (OSError, UnicodeDecodeError):
            old_text = None  # broken: rewritten below
        texts[conf] = text
        parsed = parse_partition(self.supervisord.options, view, texts)
        if text != old_text:
            atomic_write(view.path(conf), text)
        yield COMMITTED
        yield from self._apply.apply_steps(
            self.partitions.view(partition_id, texts), parsed, rerun=True
        )
        group = self.supervisord.process_groups.get(partition_id)
        if group is not None:
            yield from self._apply.start_processes_steps(group)
        self._log(f'started partition {partition_id}')
        return True

    # A stop, a destroy or a removal deletes its files first, then stops
    # the groups: once answered it is final, whatever comes (a reload, a
    # crash, the offline start), since nothing loads a file that is gone.

    def stop(self, partition_id):
        """Delete P.conf, then stop and remove the groups it declared
        (the manager groups and files stay)."""
        return self._remove_file(partition_id, None)

    def remove_group(self, partition_id, suffix):
        """Delete P-<suffix>.conf, then stop and remove its groups."""
        return self._remove_file(partition_id, suffix)

    def destroy(self, partition_id):
        """Delete every file of the partition, then stop and remove every
        group of it."""
        view = self.partitions.view(partition_id)
        names, files = sorted(view.loaded), view.files
        # P.conf goes last: until then the partition still reads as started.
        for basename in sorted(files, key=lambda name: name == view.main_file):
            atomic_remove(view.path(basename))
        yield COMMITTED
        yield from self._apply.remove_groups_steps(names)
        if files or names:
            self._log(f'destroyed partition {partition_id}')
        else:  # what supervisorctl slapos destroy says too
            self._log(
                f'destroyPartition({partition_id}): nothing to '
                f'destroy (no file, no group)'
            )
        return True

    def update(self, partition_id):
        """Re-read the partition's files and apply them; the changes as
        [added, changed, removed]. In a started partition, what ran in a
        changed group runs again (slapgrid's programs are
        ``autostart=false``: re-adding the group would leave them
        stopped)."""
        view = self.partitions.view(partition_id)
        texts = read_partition_files(view)
        parsed = parse_partition(self.supervisord.options, view, texts)
        changes = yield from self._apply.apply_steps(
            view, parsed, rerun=view.main_file in texts
        )
        return changes.as_list()

    def write_group(self, partition_id, suffix, text):
        """Write ``text`` as P-<suffix>.conf once the partition's files
        with it parse, and apply them; the changes."""
        view = self.partitions.view(partition_id)
        name = file_name(partition_id, suffix)
        texts = read_partition_files(view, skip=(name,))
        texts[name] = text
        parsed = parse_partition(self.supervisord.options, view, texts)
        atomic_write(view.path(name), text)
        self._log(f'wrote {name}')
        changes = yield from self._apply.apply_steps(
            self.partitions.view(partition_id, texts), parsed
        )
        return changes.as_list()

    def start_all(self):
        """Start every process that is not running in every group loaded
        from the include directory, a slice at a time; a partition that
        slapgrid is destroying gets only its prerm group started. The
        status of each process it tried: whatever one raises is its own
        failure, the others are still started."""
        todo = [
            (group, process)
            for group in self._groups_to_start()
            for process in sorted(group.processes.values())
            if process.get_state() not in RUNNING_STATES
        ]
        callbacks = {}
        progress = Progress(len(todo), self._log)

        def spawn(item):
            group, process = item
            if not self._may_start_all(group, process):
                return None
            progress.one_more()
            namespec = make_namespec(group.config.name, process.config.name)
            try:
                callback = floorspawn.start_process(
                    self._core, process, namespec
                )
            except Exception as error:  # never into supervisord's loop
                reason = f'{type(error).__name__}: {error}'
                self._log(
                    f'startAllPartitions: could not start {namespec}: '
                    f'{reason}',
                    'warn',
                )
                internals.give_up_spawn(process, reason)
                return item, as_fault(error)
            if callable(callback):
                callbacks[namespec] = callback
            return item, None

        sockets = internals.socket_map(self.supervisord.options)
        spawned = yield time_sliced(
            todo,
            spawn,
            STARTALL_SLICE_SECONDS,
            interrupted=lambda: clients.waiting(sockets),
        )
        failures = (yield poll_callbacks(callbacks)) if callbacks else {}
        results = []
        for (group, process), error in filter(None, spawned):
            namespec = make_namespec(group.config.name, process.config.name)
            if error is None and namespec in failures:
                if not self._may_start_all(group):
                    continue  # its partition's own job stopped it
                error = failures[namespec]
            results.append(
                {
                    'name': process.config.name,
                    'group': group.config.name,
                    'status': SupervisorFaults.SUCCESS
                    if error is None
                    else error.code,
                    'description': 'OK'
                    if error is None
                    else failure_text(error, process.spawnerr),
                }
            )
        line = summary(results, self.ownership.name_owner)
        if line is not None:
            self._log(f'startAllPartitions: {line}')
        return results

    def _groups_to_start(self):
        """The loaded groups of every partition that ``start_all``
        starts, sorted: all those the partitions' files declare, but
        those ``_spared``."""
        groups = []
        for partition_id, named in self._declared_groups().items():
            spared = self._spared(partition_id, named)
            if spared is not None:
                prerm = group_name(partition_id, PRERM_SUFFIX)
                self._log(
                    f'startAllPartitions: {partition_id} is being '
                    f'destroyed ({DESTROY_WAIT_LIST} is there): only '
                    f'its {prerm} group is started; spared: '
                    f'{", ".join(sorted(spared)) or "nothing else"}'
                )
                groups.extend(
                    group
                    for name, group in named.items()
                    if name not in spared
                )
            else:
                groups.extend(named.values())
        return sorted(groups)

    def _remove_file(self, partition_id, suffix):
        """Delete P.conf (``suffix`` None) or P-<suffix>.conf, then stop
        and remove the partition's loaded groups that it declares."""
        view = self.partitions.view(partition_id)
        basename = file_name(partition_id, suffix)
        names = view.groups_of_file(suffix)
        if atomic_remove(view.path(basename)):
            self._log(f'removed {basename}')
        yield COMMITTED
        yield from self._apply.remove_groups_steps(names)
        return True

    def _may_start_all(self, group, process=None):
        """Whether start_all may (still) start ``process`` of ``group``,
        one slice after it listed them: never in a partition that has a
        job of its own (its stop may be in flight), nor in a group since
        removed or replaced, nor a process started since."""
        name = group.config.name
        return (
            self.supervisord.process_groups.get(name) is group
            and not self._jobs.busy(self.ownership.name_owner(name))
            and (process is None or process.get_state() not in RUNNING_STATES)
        )

    # what is loaded, and the files

    def spared_groups(self):
        """The names of the loaded groups that no start of everything
        starts (``_spared``), of every partition."""
        spared = set()
        for partition_id, named in self._declared_groups().items():
            spared |= self._spared(partition_id, named) or set()
        return spared

    def _declared_groups(self):
        """``{partition_id: {name: group}}`` of the loaded groups that
        the partitions' files declare."""
        return self.partitions.partition_groups(
            self.partitions.declarations.of_all(), declared_only=True
        )

    def _spared(self, partition_id, named):
        """The names among ``named`` (the partition's loaded groups) that
        a start of everything leaves out: while slapgrid destroys the
        partition, all but its prerm group (slapgrid's prerm manager wrote
        P.conf again); None when it is not being destroyed."""
        if not self.destroying(partition_id):
            return None
        return set(named) - {group_name(partition_id, PRERM_SUFFIX)}

    def destroying(self, partition_id):
        """Whether slapgrid is destroying the partition: its prerm manager
        keeps this file while the prerm scripts run (one stat)."""
        return os.path.isfile(
            os.path.join(self.instance_root, partition_id, DESTROY_WAIT_LIST)
        )

    def _log(self, message, level='info'):
        getattr(self.supervisord.options.logger, level)(f'slapos: {message}')
