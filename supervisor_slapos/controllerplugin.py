"""``supervisorctl slapos ...``: manage the node's partitions by hand.

Runs in supervisorctl, and imports only ``faults`` (the fault codes),
``syncstate`` (what the listener last knew), ``internals`` (the help
routing), ``nodecheck`` and ``setuprecord`` (for ``check``) of this
package.
"""

import contextlib
import errno
import shlex
import sys
import time
import xmlrpc.client
from xml.parsers.expat import ExpatError

from supervisor.supervisorctl import (
    ControllerPluginBase,
    LSBInitExitStatuses,
    LSBStatusExitStatuses,
)
from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos import __version__, nodecheck
from supervisor_slapos.faults import fault_codes
from supervisor_slapos.internals import route_help
from supervisor_slapos.setuprecord import read_setup_record
from supervisor_slapos.syncstate import NO_CONTACT_BESIDE_SLAPGRID

# FAILED: an unexpected error of the plugin, its text says what.
KNOWN_FAULTS = fault_codes() | {
    SupervisorFaults.SHUTDOWN_STATE,
    SupervisorFaults.FAILED,
}

HELP = (
    'slapos status [P ...]\tShow partitions (all by default): '
    'state, files, processes\n'
    'slapos start P ...\tWrite P.conf from etc/run and '
    'etc/service, start its processes\n'
    'slapos stop P ...\tStop and remove group P, delete P.conf '
    '(manager groups stay)\n'
    'slapos destroy P ...\tStop and remove every group of P, '
    'delete all its files\n'
    'slapos update P ...\tRe-read the files of P only and apply '
    'them (start rewrites P.conf)\n'
    "slapos startall\t\tStart what is not running in include_dir's "
    'groups (offline start)\n'
    'slapos sync\t\tShow what the listener last knew about the SlapOS master\n'
    "slapos check\t\tThe node's health, a line per point: ok, warn or FAIL\n"
    'P is a partition id, e.g. slappart0. When P has no file and '
    'no group (no such\n'
    'partition, or nothing left), stop says "P: nothing to '
    'stop", destroy "P: nothing\n'
    'to destroy", update "P: nothing to update", and each exits '
    'with status 5; a\n'
    'failure exits with status 1.\n'
    'check looks at the plugin version supervisord loaded against the one\n'
    'installed, the listener, the boot entry the setup recorded, '
    "supervisord's\n"
    'descriptor limit against its processes, state_dir, and the '
    'partitions with a\n'
    "last error or destroying; run it on supervisord's host. It "
    'exits with 0 when\n'
    'all is ok, 1 on a warning, 2 on a failure, 4 when supervisord cannot be\n'
    'reached.'
)

# "slapos status" lists the partitions that have a file or a group: a
# stopped partition with no manager file has neither.
NO_PARTITION_LISTED = (
    'no partition has a file or a group (a stopped '
    'partition shows when named: slapos status P)'
)

# LSB's "not installed": nothing of the partition is in supervisord.
NOTHING_THERE = LSBInitExitStatuses.NOT_INSTALLED


class ServerUnreachable(Exception):
    """supervisord could not be reached (already said): the rest of the
    command would only say it again."""


def unreachable(serverurl, error):
    """(message, exit status) for an ``OSError`` of the connection to
    ``serverurl``: the wording and status of supervisorctl's own commands
    (``Controller.upcheck``)."""
    if error.errno == errno.ECONNREFUSED:
        return (
            f'{serverurl} refused connection',
            LSBInitExitStatuses.INSUFFICIENT_PRIVILEGES,
        )
    if error.errno == errno.ENOENT:
        return f'{serverurl} no such file', LSBInitExitStatuses.NOT_RUNNING
    return (
        f'{serverurl}: {error.strerror or error}',
        LSBInitExitStatuses.GENERIC,
    )


def about_partition(message, args):
    """``message``, followed by the partition it is about (the first
    argument) when it does not name it already."""
    if args and args[0] not in message:
        return f'{message} ({args[0]})'
    return message


def fault_message(fault, method):
    """The one line that says what a ``Fault`` of ``slapos.method`` means."""
    if fault.faultCode in KNOWN_FAULTS:
        return f'ERROR: {fault.faultString}'
    if fault.faultCode == SupervisorFaults.UNKNOWN_METHOD:
        return (
            f'ERROR: supervisord does not know slapos.{method} '
            f'(no [rpcinterface:slapos], or an older one)'
        )
    return f'ERROR: unexpected fault {fault.faultCode}: {fault.faultString}'


def is_known(info):
    """Whether the node has anything of a partition: a file or a group."""
    return bool(info['files'] or info['groups'])


def format_changes(partition_id, changes):
    added, changed, removed = changes
    if not (added or changed or removed):
        return f'{partition_id}: no change'
    parts = [
        f'{label}: {", ".join(names)}'
        for label, names in (
            ('added', added),
            ('changed', changed),
            ('removed', removed),
        )
        if names
    ]
    return f'{partition_id}: ' + '; '.join(parts)


def format_time(seconds, now):
    if not seconds:
        return 'never'
    stamp = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(seconds))
    return f'{stamp} ({format_age(now - seconds)} ago)'


def format_age(seconds):
    """``seconds`` as a reader counts them: 45 s, 12 min, 3 h 5 min,
    2 d 4 h."""
    seconds = max(0, int(seconds))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f'{seconds} s'
    if hours < 2:
        return f'{minutes} min'
    if days < 2:
        return f'{hours} h {minutes % 60} min'
    return f'{days} d {hours % 24} h'


def describe_mode(state, now):
    """``sync``'s mode line: the mode, and what it rests on.

    A mode is only as fresh as the listener's last contact with the
    master, which beside slapgrid is the format report (hours or days
    ago), or never.
    """
    mode = state['mode']
    if state['last_error'] == NO_CONTACT_BESIDE_SLAPGRID:
        return f'mode: {mode} ({NO_CONTACT_BESIDE_SLAPGRID})'
    if not state['last_attempt']:
        return f'mode: {mode} (no contact with the master recorded)'
    age = format_age(now - state['last_attempt'])
    return f'mode: {mode} (as of the last contact with the master, {age} ago)'


def format_partition(info):
    # the state column is as wide as the longest state, 'destroying'
    lines = [
        f'{info["partition_id"]:<24} {info["state"]:<10} '
        f'files: {" ".join(info["files"]) or "-"}'
    ]
    for process in info['processes']:
        namespec = f'{process["group"]}:{process["name"]}'
        process_pid = f'pid {process["pid"]}' if process['pid'] else ''
        lines.append(
            f'  {namespec:<32} {process["statename"]:<9} '
            f'{process_pid}'.rstrip()
        )
    # An operation that outlived its call (wait=False) and failed; older
    # servers do not say.
    if info.get('last_error'):
        lines.append(f'  last error: {info["last_error"]}')
    return '\n'.join(lines)


def stop_outcome(partition_id, before, _):
    if before['state'] == 'started' or partition_id in before['groups']:
        return f'{partition_id}: stopped'
    return f'{partition_id}: already stopped'


def destroy_outcome(partition_id, before, _):
    return f'{partition_id}: destroyed'


def update_outcome(partition_id, before, changes):
    return format_changes(partition_id, changes)


class SlaposControllerPlugin(ControllerPluginBase):
    """The ``slapos`` command and its sub-commands."""

    name = 'slapos'

    def __init__(self, controller):
        self.ctl = controller

    def _slapos(self):
        # A fresh proxy per command: the controller may have new credentials.
        return self.ctl.get_server_proxy('slapos')

    def _fail(self, message, status=LSBInitExitStatuses.GENERIC):
        self.ctl.output(message)
        self.ctl.exitstatus = status

    def _nothing_to_do(self, partition_id, command):
        self.ctl.output(
            f'{partition_id}: nothing to {command} (no file, no group)'
        )
        if self.ctl.exitstatus == LSBInitExitStatuses.SUCCESS:
            self.ctl.exitstatus = NOTHING_THERE  # a failure's status wins

    def _usage_error(self, message):
        self._fail(f'Error: {message}')
        self.help_slapos()

    def _refuse_arguments(self, command, args):
        """True, after a usage error, when ``slapos command`` (which takes
        none) was given arguments."""
        if args:
            self._usage_error(f'slapos {command} accepts no arguments')
        return bool(args)

    def _call(self, method, *args):
        """Call ``slapos.method``; print what went wrong and return None.

        Raises ServerUnreachable (after saying so) when supervisord cannot
        be reached.
        """
        try:
            return getattr(self._slapos(), method)(*args)
        except xmlrpc.client.Fault as e:
            self._fail(about_partition(fault_message(e, method), args))
        except xmlrpc.client.ProtocolError as e:
            if e.errcode == 401:
                raise  # supervisorctl asks for credentials, or says so
            self._fail(
                about_partition(
                    f'ERROR: {self.ctl.options.serverurl} answered '
                    f'HTTP {e.errcode} {e.errmsg}',
                    args,
                )
            )
        except (xmlrpc.client.ResponseError, ExpatError) as e:
            self._fail(
                about_partition(
                    f'ERROR: {self.ctl.options.serverurl} answered no '
                    f'XML-RPC: {e}',
                    args,
                )
            )
        except OSError as e:
            self._fail(*unreachable(self.ctl.options.serverurl, e))
            raise ServerUnreachable from e
        return None

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
        with contextlib.suppress(ServerUnreachable):
            handler(args)

    def help_slapos(self):
        for line in HELP.splitlines():
            self.ctl.output(line)
        # The ctl's own version; supervisord's log says which one it loaded.
        self.ctl.output(f'(supervisor_slapos {__version__})')

    # sub-commands

    def _slapos_status(self, partition_ids):
        try:
            if not partition_ids:
                infos = self._call('getAllPartitionInfo')
                if infos == []:
                    self.ctl.output(NO_PARTITION_LISTED)
            else:
                infos = [
                    self._call('getPartitionInfo', partition_id)
                    for partition_id in partition_ids
                ]
        except ServerUnreachable:
            # supervisorctl's own status says "unknown" (4), whatever the
            # reason: a probe reads both alike.
            self.ctl.exitstatus = LSBStatusExitStatuses.UNKNOWN
            raise
        for info in infos or ():
            if info:  # None: a fault, already printed
                self.ctl.output(format_partition(info))

    def _require_partitions(self, command, partition_ids):
        if not partition_ids:
            self._usage_error(f'slapos {command} requires a partition')
        return bool(partition_ids)

    def _on_known_partitions(self, command, partition_ids, method, outcome):
        """Call ``method`` on each partition; ``outcome(partition_id,
        before, result)`` says what it did, from the partition's info
        before the call. The call is made even on a partition with nothing
        (it does nothing then: the methods are idempotent), which is
        said."""
        if not self._require_partitions(command, partition_ids):
            return
        for partition_id in partition_ids:
            before = self._call('getPartitionInfo', partition_id)
            if before is None:
                continue
            result = self._call(method, partition_id)
            if result is None:
                continue
            if is_known(before):
                self.ctl.output(outcome(partition_id, before, result))
            else:
                self._nothing_to_do(partition_id, command)

    def _slapos_start(self, partition_ids):
        # startPartition itself refuses a partition with no directory.
        if not self._require_partitions('start', partition_ids):
            return
        for partition_id in partition_ids:
            if self._call('startPartition', partition_id) is not None:
                self.ctl.output(f'{partition_id}: started')

    def _slapos_stop(self, partition_ids):
        self._on_known_partitions(
            'stop', partition_ids, 'stopPartition', stop_outcome
        )

    def _slapos_destroy(self, partition_ids):
        self._on_known_partitions(
            'destroy', partition_ids, 'destroyPartition', destroy_outcome
        )

    def _slapos_update(self, partition_ids):
        self._on_known_partitions(
            'update', partition_ids, 'updatePartition', update_outcome
        )

    def _slapos_startall(self, args):
        if self._refuse_arguments('startall', args):
            return
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
        if self._refuse_arguments('sync', args):
            return
        state = self._call('getSyncState')
        if state is None:
            return
        now = time.time()
        self.ctl.output(describe_mode(state, now))
        self.ctl.output(f'master_url: {state["master_url"] or "-"}')
        for key in ('last_attempt', 'last_success'):
            self.ctl.output(f'{key}: {format_time(state[key], now)}')
        last_error = state['last_error']
        if last_error == NO_CONTACT_BESIDE_SLAPGRID:
            last_error = ''  # said on the mode line: no error
        self.ctl.output(f'last_error: {last_error or "-"}')

    def _slapos_check(self, args):
        if self._refuse_arguments('check', args):
            return
        try:
            lines = self._check_lines()
        except OSError as e:
            message, _ = unreachable(self.ctl.options.serverurl, e)
            # as "status": a probe reads one status for "unreachable"
            return self._fail(message, LSBStatusExitStatuses.UNKNOWN)
        except xmlrpc.client.Fault as e:  # a method every version has
            return self._fail(fault_message(e, 'check'))
        except xmlrpc.client.ProtocolError as e:
            if e.errcode == 401:
                raise  # supervisorctl asks for credentials, or says so
            return self._fail(
                f'ERROR: {self.ctl.options.serverurl} '
                f'answered HTTP {e.errcode} {e.errmsg}'
            )
        for line in lines:
            self.ctl.output(str(line))
        self.ctl.exitstatus = nodecheck.exit_status(lines)

    def _check_lines(self):
        """The lines of ``check``; OSError when supervisord cannot be
        reached."""
        supervisor = self.ctl.get_server_proxy('supervisor')
        slapos = self._slapos()
        pid = supervisor.getPID()
        processes = supervisor.getAllProcessInfo()
        lines = []
        try:
            lines.append(
                nodecheck.plugin_line(
                    self._loaded_version(slapos), __version__
                )
            )
        except nodecheck.PluginNotLoaded:
            lines.append(nodecheck.not_loaded_line(self.ctl.options.serverurl))
            slapos = None
        lines.append(nodecheck.listener_line(processes))
        serverurl = self.ctl.options.serverurl
        local = nodecheck.is_local(serverurl)
        if not local:
            lines.append(nodecheck.remote_line(serverurl))
        if slapos is not None and local:
            state_dir = slapos.getStateDir()
            try:
                record = read_setup_record(state_dir)
            except ValueError as e:
                record = e
            if record is not None:  # a node set up by supervisor-slapos-setup
                lines.append(nodecheck.boot_line(record))
        if local:
            try:
                limit = nodecheck.open_files_limit(pid)
            except OSError as e:
                limit = e
            lines.append(
                nodecheck.descriptors_line(limit, len(processes), pid)
            )
        if slapos is not None:
            if local:
                lines.append(
                    nodecheck.state_dir_line(
                        state_dir, nodecheck.probe_writable(state_dir)
                    )
                )
            lines.extend(
                nodecheck.partition_lines(slapos.getAllPartitionInfo())
            )
        return lines

    _loaded_version = staticmethod(nodecheck.loaded_version)


def make_slapos_controllerplugin(controller, **config):
    """supervisorctl's factory for ``[ctlplugin:slapos]``."""
    reason = route_help(controller)
    if reason is not None:  # stdout is the commands' output
        sys.stderr.write(f'supervisor_slapos: {reason}\n')
    return SlaposControllerPlugin(controller)
