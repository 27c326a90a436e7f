"""``supervisorctl slapos ...``: manage the node's partitions by hand."""
import shlex
import time
import xmlrpc.client

from supervisor.supervisorctl import ControllerPluginBase, LSBInitExitStatuses
from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.faults import fault_codes

KNOWN_FAULTS = fault_codes() | {SupervisorFaults.SHUTDOWN_STATE}

HELP = """\
slapos status [P ...]\tShow partitions (all by default): state, files, processes
slapos start P ...\tWrite P.conf from etc/run and etc/service, start its processes
slapos stop P ...\tStop and remove group P, delete P.conf (manager groups stay)
slapos destroy P ...\tStop and remove every group of P, delete all its files
slapos update P ...\tRe-read the files of P only and apply them
slapos startall\tStart every process of every started partition (offline start)
slapos sync\tShow what the listener last knew about the SlapOS master"""


def format_changes(pid, changes):
    added, changed, removed = changes
    if not (added or changed or removed):
        return f'{pid}: no change'
    parts = [f'{label}: {", ".join(names)}'
             for label, names in (('added', added), ('changed', changed),
                                  ('removed', removed)) if names]
    return f'{pid}: ' + '; '.join(parts)


def format_time(seconds, now):
    if not seconds:
        return 'never'
    stamp = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(seconds))
    return f'{stamp} ({max(0, int(now - seconds))} s ago)'


def format_partition(info):
    lines = [f'{info["partition_id"]:<24} {info["state"]:<8} '
             f'files: {" ".join(info["files"]) or "-"}']
    for process in info['processes']:
        namespec = f'{process["group"]}:{process["name"]}'
        pid = f'pid {process["pid"]}' if process['pid'] else ''
        lines.append(f'  {namespec:<32} {process["statename"]:<9} {pid}'
                     .rstrip())
    return '\n'.join(lines)


class SlaposControllerPlugin(ControllerPluginBase):
    """The ``slapos`` command and its sub-commands."""

    name = 'slapos'

    def __init__(self, controller):
        self.ctl = controller

    def _slapos(self):
        # A fresh proxy per command: the controller may have new credentials.
        return self.ctl.get_server_proxy('slapos')

    def _fail(self, message):
        self.ctl.output(message)
        self.ctl.exitstatus = LSBInitExitStatuses.GENERIC

    def _usage_error(self, message):
        self._fail(f'Error: {message}')
        self.help_slapos()

    def _call(self, method, *args):
        """Call ``slapos.method``; print a known fault and return None."""
        try:
            return getattr(self._slapos(), method)(*args)
        except xmlrpc.client.Fault as e:
            if e.faultCode in KNOWN_FAULTS:
                self._fail(f'ERROR: {e.faultString}')
                return None
            if e.faultCode == SupervisorFaults.UNKNOWN_METHOD:
                self._fail('ERROR: supervisord has no [rpcinterface:slapos]')
                return None
            raise

    # slapos

    def do_slapos(self, arg):
        try:
            words = shlex.split(arg)
        except ValueError as e:
            return self._usage_error(str(e))
        if not words:
            return self._usage_error('slapos requires a sub-command')
        command, args = words[0], words[1:]
        handler = getattr(self, f'_slapos_{command}', None)
        if handler is None:
            return self._usage_error(f'unknown sub-command {command!r}')
        handler(args)

    def help_slapos(self):
        for line in HELP.splitlines():
            self.ctl.output(line)

    # sub-commands

    def _slapos_status(self, pids):
        if not pids:
            infos = self._call('getAllPartitionInfo') or []
        else:
            infos = [self._call('getPartitionInfo', pid) for pid in pids]
        for info in infos:
            if info:  # None: a fault, already printed
                self.ctl.output(format_partition(info))

    def _for_each_partition(self, command, pids, method, done):
        if not pids:
            return self._usage_error(f'slapos {command} requires a partition')
        for pid in pids:
            result = self._call(method, pid)
            if result is not None:
                self.ctl.output(done(pid, result))

    def _slapos_start(self, pids):
        self._for_each_partition('start', pids, 'startPartition',
                                 lambda pid, _: f'{pid}: started')

    def _slapos_stop(self, pids):
        self._for_each_partition('stop', pids, 'stopPartition',
                                 lambda pid, _: f'{pid}: stopped')

    def _slapos_destroy(self, pids):
        self._for_each_partition('destroy', pids, 'destroyPartition',
                                 lambda pid, _: f'{pid}: destroyed')

    def _slapos_update(self, pids):
        self._for_each_partition('update', pids, 'updatePartition',
                                 format_changes)

    def _slapos_startall(self, args):
        if args:
            return self._usage_error('slapos startall accepts no arguments')
        results = self._call('startAllPartitions')
        if results is None:
            return
        failed = 0
        for result in results:
            namespec = f'{result["group"]}:{result["name"]}'
            if result['status'] == SupervisorFaults.SUCCESS:
                self.ctl.output(f'{namespec}: started')
            else:
                failed += 1
                self.ctl.output(f'{namespec}: ERROR ({result["description"]})')
        self.ctl.output(f'{len(results) - failed} started, {failed} failed')
        if failed:
            self.ctl.exitstatus = LSBInitExitStatuses.GENERIC

    def _slapos_sync(self, args):
        if args:
            return self._usage_error('slapos sync accepts no arguments')
        state = self._call('getSyncState')
        if state is None:
            return
        now = time.time()
        self.ctl.output(f'mode: {state["mode"]}')
        self.ctl.output(f'master_url: {state["master_url"] or "-"}')
        self.ctl.output(f'last_attempt: {format_time(state["last_attempt"], now)}')
        self.ctl.output(f'last_success: {format_time(state["last_success"], now)}')
        self.ctl.output(f'last_error: {state["last_error"] or "-"}')


def make_slapos_controllerplugin(controller, **config):
    """supervisorctl's factory for ``[ctlplugin:slapos]``."""
    return SlaposControllerPlugin(controller)
