"""Apply one partition's parsed files to supervisord's loaded groups
(inside supervisord).

``partitionparse`` parses a partition's files and tells what differs from
what is loaded; ``GroupApply`` makes the change, as ``supervisorctl
update`` would for those groups only: it stops and removes what is gone
or changed, adds what is new or changed, and keeps supervisord's own view
of the configuration (``options.process_group_configs``, through
``internals.replace_group_configs``) in step, so that ``reloadConfig()``
afterwards sees no difference. Its operations are job steps
(``jobs.py``): generators that yield while processes stop or start.
"""
from supervisor.options import make_namespec
from supervisor.states import RUNNING_STATES
from supervisor.xmlrpc import RPCError

from supervisor_slapos import floorspawn
from supervisor_slapos.faults import Faults, SlaposError
from supervisor_slapos.internals import replace_group_configs
from supervisor_slapos.jobs import poll_callbacks
from supervisor_slapos.partitionparse import diff


class GroupApply:
    """Changes to the loaded groups of supervisord, one partition at a time.

    ``core`` is supervisor's own RPC interface (its startProcess and
    stopProcess wait the way supervisor does); ``log`` takes one line for
    supervisord's log.
    """

    def __init__(self, supervisord, core, log):
        self.supervisord = supervisord
        self._core = core
        self._log = log

    def apply_steps(self, partition_id, loaded, parsed):
        """Make the loaded groups of the partition, ``loaded`` (``{name:
        group}``), those of ``parsed``."""
        current = {name: group.config for name, group in loaded.items()}
        changes = diff(current, parsed)
        yield from self.remove_groups_steps(changes.changed + changes.removed)
        configs = {group.name: group for group in parsed.groups}
        for name in changes.added + changes.changed:
            self.supervisord.add_process_group(configs[name])
        replace_group_configs(self.supervisord.options, current,
                              parsed.groups)
        if changes.added or changes.changed or changes.removed:
            self._log(f'applied {partition_id}: added {list(changes.added)}, '
                      f'changed {list(changes.changed)}, '
                      f'removed {list(changes.removed)}')
        return changes

    def remove_groups_steps(self, names):
        """Stop the processes of groups ``names``, then remove the groups
        and their configs."""
        groups = self.supervisord.process_groups
        yield from self._each_process_steps(
            [make_namespec(name, process.config.name)
             for name in names if name in groups
             for process in groups[name].processes.values()
             if process.get_state() in RUNNING_STATES],
            self._core.stopProcess, 'could not stop')
        for name in names:
            if (name in self.supervisord.process_groups
                    and not self.supervisord.remove_process_group(name)):
                raise SlaposError(Faults.PROCESS_FAILED,
                                  f'group {name} still has running processes')
        replace_group_configs(self.supervisord.options, names)

    def start_processes_steps(self, group):
        """Start every process of ``group`` that is not running (each
        spawned at the floor: ``floorspawn``)."""
        processes = {make_namespec(group.config.name, name): process
                     for name, process in sorted(group.processes.items())
                     if process.get_state() not in RUNNING_STATES}

        def start(namespec, wait):
            return floorspawn.start_process(
                self._core, processes[namespec], namespec, wait)
        yield from self._each_process_steps(
            list(processes), start, 'could not start')

    def _each_process_steps(self, namespecs, action, what):
        """Call supervisor's ``action`` (startProcess or stopProcess) on
        each process and wait for them all; then raise PROCESS_FAILED
        naming those that did not reach their state."""
        callbacks, failures = {}, {}
        for namespec in namespecs:
            try:
                callback = action(namespec, wait=True)
            except RPCError as error:
                failures[namespec] = error.text
                continue
            if callable(callback):
                callbacks[namespec] = callback
        if callbacks:
            failures.update((yield poll_callbacks(callbacks)))
        if failures:
            details = ', '.join(f'{name} ({text})'
                                for name, text in sorted(failures.items()))
            raise SlaposError(Faults.PROCESS_FAILED, f'{what} {details}')
