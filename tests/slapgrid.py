"""slapgrid's own supervisord files, for the compatibility tests.

``slapos.core``'s ``slapos.grid.SlapObject.Partition`` writes a
partition's include files (``P.conf`` and ``P-<suffix>.conf`` for the
groups that managers add through ``addServicesToCustomGroup``) and then
asks supervisord to apply them (``updateSupervisor``: ``reloadConfig`` and
``addProcessGroup``/``removeProcessGroup``, as ``supervisorctl update``).

slapos.core 1.26.1 cannot import ``slapos.grid.SlapObject`` on Python
3.9 to 3.11 (it loads its templates with ``importlib.resources.files()``
on a module, which only 3.12 accepts). Where it does not import,
``TemplatePartition`` does what ``Partition`` does with slapgrid's own
template files, read from the installed slapos.core, line for line the
same as ``generateSupervisorConfiguration``,
``addServicesToCustomGroup`` and ``writeSupervisorConfigurationFiles``.
"""

import importlib.util
import logging
import os
import pwd
import subprocess
import xmlrpc.client
from collections import defaultdict
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

WATCHDOG_MARK = '-on-watch'
REPOSITORY = Path(__file__).resolve().parent.parent


def import_partition_class():
    """slapgrid's ``Partition`` class, or the reason it cannot be had."""
    try:
        from slapos.grid.SlapObject import Partition
    except ImportError as e:
        return None, f'slapos.core is not installed ({e})'
    except Exception as e:  # TypeError on Python < 3.12 with 1.26.1
        return None, (
            f'slapos.grid.SlapObject does not import on this '
            f'Python ({type(e).__name__}: {e})'
        )
    return Partition, None


def templates_dir():
    """slapos.core's template directory, found without importing it."""
    try:
        spec = importlib.util.find_spec('slapos.grid')
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / 'templates'
        if (path / 'program_partition_supervisord.conf.in').exists():
            return path
    return None


class TemplatePartition:
    """What ``slapos.grid.SlapObject.Partition`` does for supervisord,
    with slapgrid's templates, for Pythons where it does not import."""

    def __init__(
        self,
        instance_path,
        supervisord_partition_configuration_dir,
        partition_id,
        supervisord_socket=None,
    ):
        directory = templates_dir()
        if directory is None:
            raise RuntimeError('slapos.core templates not found')
        self.program_template = (
            directory / 'program_partition_supervisord.conf.in'
        ).read_text()
        self.group_template = (
            directory / 'group_partition_supervisord.conf.in'
        ).read_text()
        self.instance_path = str(instance_path)
        self.run_path = os.path.join(self.instance_path, 'etc', 'run')
        self.service_path = os.path.join(self.instance_path, 'etc', 'service')
        self.supervisord_partition_configuration_dir = str(
            supervisord_partition_configuration_dir
        )
        self.supervisord_socket = supervisord_socket
        self.partition_id = partition_id
        self.supervisor_conf = defaultdict(dict)

    def getUserGroupId(self):
        st = os.stat(self.instance_path)
        return st.st_uid, st.st_gid

    def getGroupIdFromSuffix(self, suffix=None):
        return f'{self.partition_id}-{suffix}' if suffix else self.partition_id

    def addProgramToGroup(
        self, suffix, program_id, name, command, as_user=True
    ):
        group = self.getGroupIdFromSuffix(suffix)
        self.supervisor_conf[group][program_id] = (name, command, as_user)

    def addServicesToCustomGroup(
        self, suffix, runner_list, path, extension=''
    ):
        for runner in runner_list:
            self.addProgramToGroup(
                suffix, runner, runner + extension, os.path.join(path, runner)
            )

    def generateSupervisorConfiguration(self):
        self.supervisor_conf = defaultdict(dict)
        runner_list = service_list = []
        if os.path.isdir(self.run_path):
            runner_list = sorted(os.listdir(self.run_path))
        if os.path.isdir(self.service_path):
            service_list = sorted(os.listdir(self.service_path))
        if runner_list or service_list:
            self.addServicesToCustomGroup(None, runner_list, self.run_path)
            self.addServicesToCustomGroup(
                None, service_list, self.service_path, WATCHDOG_MARK
            )

    def getSupervisorConfigurationFiles(self):
        for f in os.listdir(self.supervisord_partition_configuration_dir):
            # slapgrid's lines, as they are there
            if os.path.splitext(f)[0] == self.partition_id:  # noqa: SIM114
                yield f
            elif f.startswith(self.partition_id + '-'):
                yield f

    def writeSupervisorConfigurationFiles(self):
        remaining = set(self.getSupervisorConfigurationFiles())
        for group, programs in self.supervisor_conf.items():
            filename = f'{group}.conf'
            text = self.group_template % {
                'instance_id': group,
                'program_list': ','.join(f'{group}_{p}' for p in programs),
            }
            for program_id, (name, command, as_user) in programs.items():
                uid, gid = self.getUserGroupId() if as_user else (0, 0)
                text += '\n' + self.program_template % {
                    'program_id': f'{group}_{program_id}',
                    'program_directory': self.instance_path,
                    'program_command': command,
                    'program_name': name,
                    'instance_path': self.instance_path,
                    'user_id': uid,
                    'group_id': gid,
                    'HOME': pwd.getpwuid(uid).pw_dir,
                    'USER': pwd.getpwuid(uid).pw_name,
                }
            remaining.discard(filename)
            path = os.path.join(
                self.supervisord_partition_configuration_dir, filename
            )
            with open(path, 'w') as f:  # slapgrid's updateFile: mode 0600
                os.fchmod(f.fileno(), 0o600)
                f.write(text)
        for filename in remaining:
            os.unlink(
                os.path.join(
                    self.supervisord_partition_configuration_dir, filename
                )
            )
        if self.supervisor_conf or remaining:
            self.updateSupervisor()

    def updateSupervisor(self):
        """Without a socket, only the files are written."""
        if self.supervisord_socket is not None:
            update_supervisor(self.supervisord_socket)

    def updateSupervisorConfiguration(self):
        self.generateSupervisorConfiguration()
        self.writeSupervisorConfigurationFiles()

    def start(self):
        self.updateSupervisorConfiguration()
        try:
            rpc(self.supervisord_socket).startProcessGroup(
                self.partition_id, False
            )
        except xmlrpc.client.Fault as e:
            if not e.faultString.startswith('BAD_NAME:'):
                raise

    def stop(self):
        path = os.path.join(
            self.supervisord_partition_configuration_dir,
            self.partition_id + '.conf',
        )
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        self.updateSupervisor()


def rpc(socket):
    """The ``supervisor`` namespace of the supervisord at ``socket``."""
    return xmlrpc.client.ServerProxy(
        'http://127.0.0.1',
        SupervisorTransport('', '', 'unix://' + str(socket)),
    ).supervisor


def update_supervisor(socket):
    """slapgrid's ``Partition.updateSupervisor``: ``supervisorctl update``."""
    supervisor = rpc(socket)
    [[added, changed, removed]] = supervisor.reloadConfig()
    for gname in removed:
        supervisor.stopProcessGroup(gname)
        supervisor.removeProcessGroup(gname)
    for gname in changed:
        supervisor.stopProcessGroup(gname)
        supervisor.removeProcessGroup(gname)
        supervisor.addProcessGroup(gname)
    for gname in added:
        supervisor.addProcessGroup(gname)


def make_partition(instance_path, include_dir, partition_id, socket=None):
    """slapgrid's ``Partition`` for ``instance_path`` writing into
    ``include_dir`` (the real class when it imports, else
    ``TemplatePartition``). With ``socket`` it drives that supervisord as
    slapgrid does; without, ``updateSupervisor`` is stubbed out."""
    cls, _ = import_partition_class()
    if cls is None:
        return TemplatePartition(
            instance_path,
            include_dir,
            partition_id,
            None if socket is None else str(socket),
        )
    partition = cls(
        software_path=os.path.join(str(instance_path), 'no-software'),
        instance_path=str(instance_path),
        shared_part_list='',
        build_time_part_list='',
        supervisord_partition_configuration_dir=str(include_dir),
        supervisord_socket=None if socket is None else str(socket),
        computer_partition=None,
        computer_id='COMP-0',
        partition_id=partition_id,
        server_url='',
        software_release_url='',
        buildout=None,
        logger=logging.getLogger('slapgrid'),
    )
    if socket is None:
        partition.updateSupervisor = lambda: None
    return partition


def write_files(partition, managers=True):
    """What slapgrid writes for ``partition``: ``P.conf`` and, with
    ``managers``, the files of slapos.manager.prerm's and
    slapos.manager.portredir's groups."""
    partition.generateSupervisorConfiguration()
    if managers:
        partition.addServicesToCustomGroup(
            'prerm',
            ['cleanup'],
            os.path.join(partition.instance_path, 'etc', 'prerm'),
        )
        partition.addProgramToGroup(
            'socat',
            'socat-tcp-80',
            'socat-tcp-80',
            'socat TCP6-LISTEN:80,fork TCP4:10.0.0.2:80',
            as_user=False,
        )
    partition.writeSupervisorConfigurationFiles()


# write_files with slapgrid's own Partition, run by a stack's Python
_STACK_WRITE_FILES = """\
import sys
import slapos.grid.SlapObject  # slapgrid's own, or fail
sys.path.insert(0, sys.argv[1])
from tests import slapgrid
slapgrid.write_files(
    slapgrid.make_partition(sys.argv[2], sys.argv[3], sys.argv[4]),
    managers=sys.argv[5] == 'managers')
"""


def stack_write_files(
    stack, instance_path, include_dir, partition_id, managers=True
):
    """:func:`write_files` by the slapgrid of ``stack`` (testbed.stacks),
    in its Python: slapos.core 1.22.1 on Python 3.9 for node39."""
    result = subprocess.run(
        stack.code_command(
            _STACK_WRITE_FILES,
            REPOSITORY,
            instance_path,
            include_dir,
            partition_id,
            'managers' if managers else 'no-managers',
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def portredir(partition, programs):
    """What ``slapos.manager.portredir`` does once the partition is
    started: add group ``P-socat`` with ``programs`` (``{name: command}``)
    and start those of its processes that never started."""
    partition.generateSupervisorConfiguration()
    for name, command in programs.items():
        partition.addProgramToGroup('socat', name, name, command)
    partition.writeSupervisorConfigurationFiles()
    supervisor = rpc(partition.supervisord_socket)
    for name in programs:
        namespec = f'{partition.partition_id}-socat:{name}'
        if supervisor.getProcessInfo(namespec)['start'] == 0:
            supervisor.startProcess(namespec, False)


def node_file_text(
    name, command, log_file, priority, directory='/opt/slapos', uid=0
):
    """What slapgrid writes as ``firewall.conf`` or ``dbus.conf``
    (``Slapgrid._generateFirewallSupervisorConf``/``_generateDbus...``)
    for ``name``; tests put their own ``command``, a ``directory`` that
    exists and, when not root, their own ``uid`` in place of slapgrid's."""
    return (
        f'[program:{name}]\ndirectory={directory}\ncommand={command}\n'
        f'process_name={name}\npriority={priority}\nautostart=true\n'
        f'autorestart=true\nstartsecs=0\nstartretries=0\nexitcodes=0\n'
        f'stopsignal=TERM\nstopwaitsecs=60\nuser={uid}\ngroup={uid}\n'
        f'serverurl=AUTO\nredirect_stderr=true\n'
        f'stdout_logfile={log_file}\nstdout_logfile_maxbytes=100KB\n'
        f'stdout_logfile_backups=1\nstderr_logfile={log_file}\n'
        f'stderr_logfile_maxbytes=100KB\nstderr_logfile_backups=1\n'
    )
