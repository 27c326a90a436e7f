"""A real supervisord with the plugin loaded (or a plain one, the
benchmarks' baseline), in a temporary directory.

Tests drive it the way an operator would: over XML-RPC on its unix socket
and through ``supervisorctl``.
"""

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import xmlrpc.client
from pathlib import Path

import pytest
from supervisor.xmlrpc import SupervisorTransport

import supervisor_slapos
from testbed.polling import wait_until
from testbed.proc import has_execed, kill_tree

SLEEPER = '#!/bin/sh\nexec sleep 3600\n'

CONFIG_TEMPLATE = """\
[unix_http_server]
file = {socket}
chmod = 0700

[supervisord]
logfile = {root}/supervisord.log
pidfile = {root}/supervisord.pid
childlogdir = {root}/log
loglevel = {loglevel}
identifier = test-node
{supervisord_options}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = {main_factory}

{plugin}[supervisorctl]
serverurl = unix://{socket}

[include]
files = {include_dir}/*.conf
{extra}"""

# The plugin's sections (left out of a plain supervisord).
PLUGIN_TEMPLATE = """\
[rpcinterface:slapos]
supervisor.rpcinterface_factory = {rpc_factory}
instance_root = {instance_root}
include_dir = {include_dir}
{rpc_options}
[ctlplugin:slapos]
supervisor.ctl_factory = {ctl_factory}

"""

LISTENER_TEMPLATE = """
[eventlistener:slapos]
command = {command}
events = {events}
buffer_size = 100
autorestart = true
startsecs = 0
stderr_logfile = {root}/listener.log
stderr_logfile_maxbytes = 10MB
"""


class SupervisorNode:
    """One supervisord process and its directories.

    ``root/instance`` is the instance root, ``root/etc/supervisord.conf.d``
    the include directory (made here) unless ``include_dir`` names
    another (left to the caller or the plugin to make), ``state_dir`` the
    plugin's state_dir (default: its own default). ``listener`` is the
    listener's argument list (after the executable), or None for no
    listener. ``environ`` adds to supervisord's environment. With
    ``plugin=False`` it is a plain supervisord (the benchmarks' baseline):
    the same configuration without the plugin's sections.
    ``supervisord_options`` are lines added to ``[supervisord]``.
    """

    def __init__(
        self,
        root,
        listener=None,
        extra='',
        rpc_options='',
        loglevel='info',
        listener_events='SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60',
        include_dir=None,
        state_dir=None,
        environ=None,
        plugin=True,
        supervisord_options='',
    ):
        self.root = Path(root)
        self.instance_root = self.root / 'instance'
        self.include_dir = Path(
            include_dir or self.root / 'etc' / 'supervisord.conf.d'
        )
        self.state_dir = Path(state_dir or self.include_dir.parent)
        self.config = self.root / 'etc' / 'supervisord.conf'
        self.socket = self.root / 's.sock'
        self.listener = listener
        self.listener_events = listener_events
        self.extra = extra
        self.rpc_options = rpc_options
        if state_dir is not None:
            self.rpc_options += f'state_dir = {state_dir}\n'
        self.environ = environ or {}
        self.loglevel = loglevel
        self.plugin = plugin
        self.supervisord_options = supervisord_options
        # run supervisord under this command (e.g. ``ip netns exec NS``)
        self.command_prefix = ()
        # supervisord's working directory (None: this one)
        self.cwd = None
        self.process = None
        made = [self.instance_root, self.root / 'etc', self.root / 'log']
        if include_dir is None:
            made.append(self.include_dir)
        for path in made:
            path.mkdir(parents=True, exist_ok=True)
        self.write_config()

    # configuration

    def write_config(self):
        extra = self.extra
        if self.listener is not None:
            command = ' '.join(
                [
                    sys.executable,
                    '-m',
                    'supervisor_slapos.listener',
                    *self.listener,
                ]
            )
            extra += LISTENER_TEMPLATE.format(
                command=command, root=self.root, events=self.listener_events
            )
        plugin = (
            PLUGIN_TEMPLATE.format(
                instance_root=self.instance_root,
                include_dir=self.include_dir,
                rpc_options=self.rpc_options,
                rpc_factory=supervisor_slapos.RPC_FACTORY,
                ctl_factory=supervisor_slapos.CTL_FACTORY,
            )
            if self.plugin
            else ''
        )
        self.config.write_text(
            CONFIG_TEMPLATE.format(
                socket=self.socket,
                root=self.root,
                loglevel=self.loglevel,
                supervisord_options=self.supervisord_options,
                include_dir=self.include_dir,
                plugin=plugin,
                extra=extra,
                main_factory='supervisor.rpcinterface:make_main_rpcinterface',
            )
        )

    def make_partition(self, pid, run=None, service=None):
        """Create ``instance/P`` with executable etc/run and etc/service
        scripts; ``run`` and ``service`` map names to script bodies (or are
        lists of names, each a sleeper)."""
        partition = self.instance_root / pid
        for kind, entries in (('run', run), ('service', service)):
            directory = partition / 'etc' / kind
            directory.mkdir(parents=True, exist_ok=True)
            if isinstance(entries, (list, tuple)):
                entries = dict.fromkeys(entries, SLEEPER)
            for name, body in (entries or {}).items():
                script = directory / name
                script.write_text(body)
                script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return partition

    def include_file(self, name):
        return self.include_dir / name

    def include_listing(self):
        """{basename: bytes} of the include directory, for before/after."""
        return {
            p.name: p.read_bytes() for p in sorted(self.include_dir.iterdir())
        }

    # life cycle

    def start(self, wait=True, module='supervisor.supervisord'):
        """Start supervisord (``module``: the one run with ``-m``)."""
        self.process = subprocess.Popen(
            [
                *self.command_prefix,
                sys.executable,
                '-m',
                module,
                '-n',
                '-c',
                str(self.config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, **self.environ},
            cwd=self.cwd,
        )
        if wait:
            self.wait_running()
        return self

    def wait_running(self, timeout=30):
        def running():
            if self.process.poll() is not None:
                raise AssertionError(
                    'supervisord exited: '
                    + self.process.stderr.read().decode(errors='replace')
                    + self.log_tail()
                )
            try:
                return self.rpc.supervisor.getState()['statename'] == 'RUNNING'
            except (OSError, xmlrpc.client.Fault):
                return False

        wait_until(running, timeout, what='supervisord RUNNING')

    def log_tail(self, lines=30):
        return '\n'.join(self.log_text().splitlines()[-lines:])

    def log_text(self):
        """supervisord's whole log ('' before it has one)."""
        log = self.root / 'supervisord.log'
        if not log.exists():
            return ''
        return log.read_text(errors='replace')

    def log_count(self, text, log='supervisord.log'):
        """How many lines of ``log`` (under the node's root) hold
        ``text`` (0 without the file)."""
        path = self.root / log
        if not path.exists():
            return 0
        return sum(
            text in line
            for line in path.read_text(errors='replace').splitlines()
        )

    def child_pids(self):
        try:
            infos = self.rpc.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Fault):
            return []
        return [info['pid'] for info in infos if info['pid']]

    def kill(self, sig=signal.SIGKILL):
        """Kill supervisord alone, as a crash would: its children survive."""
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def shutdown(self, timeout=120):
        """A clean supervisord shutdown (stops every process first)."""
        self.rpc.supervisor.shutdown()
        self.process.wait(timeout=timeout)

    def cleanup(self):
        """Kill supervisord and every process it started, whatever state
        (``proc.kill_tree``), then forget it."""
        if self.process is None:
            return
        kill_tree(self.process.pid)
        self.process.wait(timeout=30)
        self.process.stderr.close()
        self.process = None

    # clients

    @property
    def rpc(self):
        return unix_rpc(self.socket)

    def ctl_command(self, *args):
        """supervisorctl's command line for this node (interactive when
        ``args`` is empty)."""
        return [
            sys.executable,
            '-m',
            'supervisor.supervisorctl',
            '-c',
            str(self.config),
            *args,
        ]

    def ctl(self, *args, input=None):
        """Run supervisorctl; return the CompletedProcess (text)."""
        return subprocess.run(
            self.ctl_command(*args),
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )

    # helpers for assertions

    def processes(self, group):
        return group_processes(self.rpc, group)

    def group_running(self, group):
        """True when ``group`` has processes and every one is RUNNING."""
        return bool(running_group_processes(self.rpc, group))

    def pids(self, group):
        """{name: pid} of the processes of ``group``."""
        return {
            name: info['pid'] for name, info in self.processes(group).items()
        }

    def sync_state(self):
        """What the listener last knew (``slapos.getSyncState()``)."""
        return self.rpc.slapos.getSyncState()

    def process_table(self):
        """Every process as (group, name, pid, statename), sorted: what
        must not change across a refused call (getAllProcessInfo's own
        'now' and uptime do)."""
        return sorted(
            (i['group'], i['name'], i['pid'], i['statename'])
            for i in self.rpc.supervisor.getAllProcessInfo()
        )

    def start_partition(self, partition_id):
        """``slapos.startPartition``, then wait until its processes run
        their own command (``wait_execed``); {name: pid} of them."""
        self.rpc.slapos.startPartition(partition_id)
        self.wait_execed(partition_id)
        return self.pids(partition_id)

    def wait_execed(self, group, timeout=30):
        """Wait until every process of ``group`` runs its own command.

        A SIGTERM sent between fork and exec is lost (see SPEC), so a test
        that stops right after a start waits for this first.
        """

        def execed():
            infos = self.processes(group)
            return infos and all(
                info['statename'] == 'RUNNING' and has_execed(info['pid'])
                for info in infos.values()
            )

        wait_until(execed, timeout, what=f'{group} processes exec')


def plugin_copy(directory, version):
    """A copy of this supervisor_slapos in ``directory`` whose version is
    ``version`` (what supervisord still runs after an upgrade); returns
    the environment that makes a supervisord load it (when it runs
    outside a source tree: ``python -m`` puts its directory first)."""
    source = Path(supervisor_slapos.__file__).parent
    init = Path(directory) / 'supervisor_slapos' / '__init__.py'
    shutil.copytree(
        source, init.parent, ignore=shutil.ignore_patterns('__pycache__')
    )
    init.write_text(
        re.sub(
            r"^__version__ = '[^']*'$",
            f"__version__ = '{version}'",
            init.read_text(),
            flags=re.M,
        )
    )
    return {'PYTHONPATH': str(directory)}


@contextlib.contextmanager
def unwritable(directory):
    """``directory`` made unwritable for this process for the time of the
    block: immutable for root (``chattr +i``; the test is skipped where
    the filesystem has no such attribute), read-only for anyone else."""
    if os.geteuid() != 0:
        mode = os.stat(directory).st_mode
        os.chmod(directory, 0o500)
        try:
            yield
        finally:
            os.chmod(directory, mode)
        return
    made = subprocess.run(
        ['chattr', '+i', str(directory)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f'chattr +i {directory}: {made.stderr.strip()}')
    try:
        yield
    finally:
        subprocess.run(['chattr', '-i', str(directory)], check=True)


def unix_rpc(socket):
    """An XML-RPC client of the supervisord listening on unix ``socket``."""
    return xmlrpc.client.ServerProxy(
        'http://127.0.0.1',
        transport=SupervisorTransport(None, None, f'unix://{socket}'),
    )


def group_processes(rpc, group):
    """{name: info} of the processes of ``group`` (empty if no group)."""
    return {
        info['name']: info
        for info in rpc.supervisor.getAllProcessInfo()
        if info['group'] == group
    }


def running_group_processes(rpc, group):
    """``group_processes`` when ``group`` has processes and every one is
    RUNNING, else {}."""
    infos = group_processes(rpc, group)
    if all(info['statename'] == 'RUNNING' for info in infos.values()):
        return infos
    return {}


def dedent(text):
    return textwrap.dedent(text).lstrip()
