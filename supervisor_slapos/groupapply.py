"""Apply one partition's parsed files to supervisord's loaded groups
(inside supervisord).

``partitionparse`` parses a partition's files; ``diff`` tells what
differs from the partition's loaded groups (its ``PartitionView``'s);
``GroupApply`` makes the change, as ``supervisorctl
update`` would for those groups only: it stops and removes what is gone
or changed, adds what is new or changed, and keeps supervisord's own view
of the configuration (``options.process_group_configs``, through
``internals.replace_group_configs``) in step, so that ``reloadConfig()``
afterwards sees no difference. Its operations are job steps
(``jobs.py``): generators that yield while processes stop or start.
"""

from dataclasses import dataclass

from supervisor.options import make_namespec
from supervisor.states import RUNNING_STATES

from supervisor_slapos import floorspawn
from supervisor_slapos.faults import Faults, SlaposError, as_fault
from supervisor_slapos.internals import replace_group_configs
from supervisor_slapos.jobs import poll_callbacks
from supervisor_slapos.startresults import failure_text


@dataclass(frozen=True)
class Diff:
    added: tuple
    changed: tuple
    removed: tuple

    def as_list(self):
        return [list(self.added), list(self.changed), list(self.removed)]


def diff(current, parsed):
    """Compare loaded configs ``{name: config}`` with a ParsedPartition."""
    new = {group.name: group for group in parsed.groups}
    return Diff(
        added=tuple(sorted(set(new) - set(current))),
        changed=tuple(
            sorted(n for n in new if n in current and new[n] != current[n])
        ),
        removed=tuple(sorted(set(current) - set(new))),
    )


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

    def apply_steps(self, view, parsed, rerun=False):
        """Make the loaded groups of the partition, ``view.loaded``
        (``{name: group}``), those of ``parsed``; with ``rerun``, the
        processes of a changed group that were running before run again
        after (as ``supervisorctl update`` does for ``autostart=true``
        programs, whatever their ``autostart``)."""
        partition_id, loaded = view.partition_id, view.loaded
        current = {name: group.config for name, group in loaded.items()}
        changes = diff(current, parsed)
        running = (
            {name: running_names(loaded[name]) for name in changes.changed}
            if rerun
            else {}
        )
        yield from self.remove_groups_steps(changes.changed + changes.removed)
        configs = {group.name: group for group in parsed.groups}
        for name in changes.added + changes.changed:
            self.supervisord.add_process_group(configs[name])
        replace_group_configs(self.supervisord.options, current, parsed.groups)
        if changes.added or changes.changed or changes.removed:
            self._log(
                f'applied {partition_id}: added {list(changes.added)}, '
                f'changed {list(changes.changed)}, '
                f'removed {list(changes.removed)}'
            )
        for name, names in sorted(running.items()):
            group = self.supervisord.process_groups.get(name)
            if names and group is not None:
                yield from self.start_processes_steps(group, names)
        return changes

    def remove_groups_steps(self, names):
        """Stop the processes of groups ``names``, then remove the groups
        and their configs."""
        groups = self.supervisord.process_groups
        yield from self._each_process_steps(
            {
                make_namespec(name, process.config.name): process
                for name in names
                if name in groups
                for process in groups[name].processes.values()
                if process.get_state() in RUNNING_STATES
            },
            self._core.stopProcess,
            'could not stop',
        )
        for name in names:
            if (
                name in self.supervisord.process_groups
                and not self.supervisord.remove_process_group(name)
            ):
                raise SlaposError(
                    Faults.PROCESS_FAILED,
                    f'group {name} still has running processes',
                )
        replace_group_configs(self.supervisord.options, names)

    def start_processes_steps(self, group, names=None):
        """Start every process of ``group`` (of ``names``, when given)
        that is not running (each spawned at the floor: ``floorspawn``)."""
        processes = {
            make_namespec(group.config.name, name): process
            for name, process in sorted(group.processes.items())
            if (names is None or name in names)
            and process.get_state() not in RUNNING_STATES
        }

        def start(namespec, wait):
            return floorspawn.start_process(
                self._core, processes[namespec], namespec, wait
            )

        yield from self._each_process_steps(
            processes, start, 'could not start', reasons=True
        )

    def _each_process_steps(self, processes, action, what, reasons=False):
        """Call supervisor's ``action`` (startProcess or stopProcess) on
        each process of ``processes`` (``{namespec: process}``) and wait
        for them all; then raise PROCESS_FAILED naming those that did not
        reach their state (with ``reasons``, supervisor's reason too:
        ``startresults.failure_text``). Whatever one of them raises is its
        own failure: the others are still acted on."""
        callbacks, failures = {}, {}
        for namespec in processes:
            try:
                callback = action(namespec, wait=True)
            except Exception as error:  # never into supervisord's loop
                failures[namespec] = as_fault(error)
                continue
            if callable(callback):
                callbacks[namespec] = callback
        if callbacks:
            failures.update((yield poll_callbacks(callbacks)))
        if failures:
            details = ', '.join(
                f'{name} ({failure_text(error, processes[name].spawnerr)})'
                if reasons
                else f'{name} ({error.text})'
                for name, error in sorted(failures.items())
            )
            raise SlaposError(Faults.PROCESS_FAILED, f'{what} {details}')


def running_names(group):
    """The names of ``group``'s processes that are running (or starting)."""
    return {
        name
        for name, process in group.processes.items()
        if process.get_state() in RUNNING_STATES
    }
