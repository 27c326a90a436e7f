"""A real slapgrid node: slapos.core's own code runs its supervisord.

:class:`SlapgridNode` lays out a node as ``slapos node format`` would
(which needs root network setup, so the partitions are registered in the
master through its format API and their directories made by hand), makes
slapgrid's supervisord with ``slapos.grid.svcbackend``'s
``createSupervisordConfiguration`` and ``launchSupervisord`` (a daemon,
started with an empty environment), and runs the real ``slapos node
instance`` and ``slapos node report`` commands against a ``slapos proxy``
master (:class:`testbed.slapos_master.Master`), all of a stack
(testbed/stacks.py: the run's, ``SUPERVISOR_SLAPOS_STACK``, unless given):
its ``slapos`` command, and its Python for slapgrid's own code and for the
plugin's commands and supervisorctl.

The software release is local: its directory
``<software_root>/<md5 of the URL>/`` holds an ``instance.cfg`` and a
``bin/buildout`` shell script, which is all ``slapos node instance`` runs
(as the partition's user, in the partition's directory). That script
first sleeps as long as ``set_buildout`` says (none by default; real
buildouts take seconds), writes the partition's ``etc/run/web`` (or the
run entries ``set_buildout`` names), and, when the partition holds a
file ``prerm-request`` (``PROOF RELEASE``), an ``etc/prerm/cleanup`` that
appends ``start`` to PROOF, waits until RELEASE exists, then appends
``end``.

"Reboot" helpers: ``kill()`` (SIGKILL of supervisord and every process it
started), ``remove_timestamps()`` (what ``slapos node boot`` does before
slapgrid's next run) and ``run_boot_entry()`` (the plugin's boot entry).
"""

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from urllib.parse import urlsplit

from testbed import slapos_master, stacks
from testbed.cron import cron_limits, cron_split, reboot_entries
from testbed.node import group_processes, running_group_processes, unix_rpc
from testbed.polling import wait_until
from testbed.proc import kill_tree
from testbed.slapos_master import COMPUTER_ID, SOFTWARE_RELEASE

PARTITIONS = ('slappart0', 'slappart1')
NETMASK = '255.0.0.0'
# slapgrid requires this mode of every partition directory.
PARTITION_MODE = 0o750
# slapgrid reports with its XML API (slap library), the listener with the
# JSON API (slapos_master.REPORT_STATE).
STARTED = 'startedComputerPartition'
STOPPED = 'stoppedComputerPartition'
DESTROYED = 'destroyedComputerPartition'

BUILDOUT = """\
#!/bin/sh
# The test software release's "buildout": the partition's services.
set -e
software="$(dirname "$0")/.."
# as long as the node's set_buildout says a buildout takes
if [ -f "$software/buildout-seconds" ]; then
  sleep "$(cat "$software/buildout-seconds")"
fi
mkdir -p etc/run
for name in $(cat "$software/run-entries" 2>/dev/null || echo web); do
  printf '#!/bin/sh\\nexec sleep 100000\\n' > "etc/run/$name"
  chmod 755 "etc/run/$name"
done
if [ -f prerm-request ]; then
  read proof release < prerm-request
  mkdir -p etc/prerm
  cat > etc/prerm/cleanup <<EOF
#!/bin/sh
echo start >> $proof
# a cleanup that lasts until the test lets it end (a minute at most)
n=0
while [ ! -e $release ] && [ \\$n -lt 600 ]; do sleep 0.1; n=\\$((n + 1)); done
echo end >> $proof
EOF
  chmod 755 etc/prerm/cleanup
fi
"""


def partition_user():
    """(uid, gid) for the partitions: slapgrid runs buildout as the owner
    of the partition's directory and refuses root."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    nobody = pwd.getpwnam('nobody')
    return nobody.pw_uid, nobody.pw_gid


# slapos.util.dumps([]) (xml_marshaller), in slapos.core 1.22.1 and 1.26.1
# alike: written out, so that the tests' own Python need not import the
# stack's slapos.core.
EMPTY_LIST_XML = b'<marshal><list id="i2"/></marshal>'


class _NodeFrontHandler(slapos_master._Handler):
    def do_GET(self):
        if urlsplit(self.path).path == '/getHostingSubscriptionIpList':
            self._send(200, EMPTY_LIST_XML, 'text/xml')
        else:
            super().do_GET()


class NodeFront(slapos_master.FaultProxy):
    """The recording front of the master, answering the one slap call
    ``slapos proxy`` lacks and slapgrid makes when ``[firewall]`` is set
    (the partition's instance tree addresses: none here)."""

    handler_class = _NodeFrontHandler


class NodeMaster(slapos_master.Master):
    front_class = NodeFront


# slapgrid's own launch of its supervisord (what ``slapos node instance``
# does first), run by the stack's Python; argv[1] is the instance root.
LAUNCH = """\
import logging, sys
from slapos.grid import svcbackend
logging.basicConfig(level=logging.INFO)
logger = logging.getLogger('slapgrid-node')
svcbackend.createSupervisordConfiguration(sys.argv[1], logger)
svcbackend.launchSupervisord(sys.argv[1], logger)
"""


class SlapgridNode:
    """A node under ``root``: ``srv/slapgrid`` (instance root),
    ``opt/slapgrid`` (software root), ``etc/slapos.cfg``.

    The partitions' addresses are ``<address_prefix><n>`` (n from 1):
    ``127.0.1.`` by default, loopback addresses every Linux host can bind,
    so that the listener's address wait (Addresses first) ends at once; a
    prefix this host does not have (``10.0.0.``) makes it wait for them.
    A prefix of two octets (``127.1.``) gives ``127.1.0.1`` to
    ``127.1.0.250``, then ``127.1.1.1``...: room for any number of
    partitions.

    With ``node_programs`` (the default) slapos.cfg has a ``[firewall]``
    section, so slapgrid writes and runs its ``firewall`` and ``dbus``
    programs. slapgrid gives them ``directory=/opt/slapos``: on a host
    without that directory they cannot spawn, and with slapgrid's
    ``startsecs=0``/``autorestart=true`` supervisord respawns them without
    end (dozens of forks a second). Without, none (a node without a
    firewall, as many are)."""

    def __init__(
        self,
        root,
        master,
        partitions=PARTITIONS,
        address_prefix='127.0.1.',
        node_programs=True,
        stack=None,
    ):
        self.root = Path(root)
        self.stack = stacks.require_slapgrid(stack)
        self.master = master
        self.partitions = partitions
        self.address_prefix = address_prefix
        self.node_programs = node_programs
        self.instance_root = self.root / 'srv' / 'slapgrid'
        self.software_root = self.root / 'opt' / 'slapgrid'
        self.cfg = self.root / 'etc' / 'slapos.cfg'
        # what slapos node format dumps ([slapformat] computer_json)
        self.computer_json = self.root / 'etc' / 'slapos.json'
        self.proof_dir = self.root / 'proof'
        self.etc = self.instance_root / 'etc'
        self.include_dir = self.etc / 'supervisord.conf.d'
        self.main_config = self.etc / 'supervisord.conf'
        self.client_config = self.etc / 'supervisorctl-slapos.conf'
        # the setup's boot entry goes here, not into the host's /etc/cron.d
        self.cron_dir = self.root / 'cron.d'
        self.boot_entry = self.cron_dir / 'supervisor-slapos'
        self.socket = self.instance_root / 'sv.sock'
        self.pidfile = self.instance_root / 'var' / 'run' / 'supervisord.pid'
        self.listener_log = (
            self.instance_root
            / 'var'
            / 'log'
            / 'supervisor-slapos-listener.log'
        )
        self.uid, self.gid = partition_user()

    # layout

    def prepare(self, linear_start=False):
        """slapos.cfg, the software release, the partitions (locally and
        in the master), and slapgrid's supervisord, running (started by
        ``supervisor-slapos-supervisord --slapos-cfg`` if
        ``linear_start``)."""
        for path in (
            self.instance_root,
            self.software_root,
            self.cfg.parent,
            self.proof_dir,
            self.cron_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)
        self.proof_dir.chmod(0o777)
        self.write_cfg()
        self.install_software()
        for pid in self.partitions:
            path = self.instance_root / pid
            path.mkdir()
            os.chown(path, self.uid, self.gid)
            path.chmod(PARTITION_MODE)
        self.master.proxy.supply()
        self.master.proxy.format(
            {
                pid: [(address, NETMASK)]
                for pid, address in self.addresses().items()
            }
        )
        self.launch_supervisord(linear_start)
        return self

    def write_cfg(self):
        run = self.root / 'run'
        run.mkdir(exist_ok=True)
        self.cfg.write_text(
            f'[slapos]\n'
            f'computer_id = {COMPUTER_ID}\n'
            f'master_url = {self.master.url}\n'
            f'instance_root = {self.instance_root}\n'
            f'software_root = {self.software_root}\n'
            f'root_check = false\n'
            f'maximal_delay = 0\n'
            f'manager_list = prerm\n'
            f'pidfile_instance = {run}/slapgrid-cp.pid\n'
            f'pidfile_report = {run}/slapgrid-ur.pid\n'
            + (
                f'\n[firewall]\n'
                # slapgrid then writes firewall.conf and dbus.conf into
                # the include directory, as on a real node
                f'firewall_executable = /bin/sleep 100000\n'
                f'dbus_executable = /bin/sleep 100000\n'
                f'log_file = {self.root}/firewall.log\n'
                f'dbus_log_file = {self.root}/dbus.log\n'
                if self.node_programs
                else ''
            )
            + f'\n[slapformat]\n'
            f'computer_json = {self.computer_json}\n'
        )
        self.computer_json.write_text(
            json.dumps(
                {
                    'reference': COMPUTER_ID,
                    'partition_list': [
                        {
                            'reference': pid,
                            'tap': {'name': f'tap-{pid}'},
                            'address_list': [
                                {'addr': address, 'netmask': NETMASK}
                            ],
                        }
                        for pid, address in self.addresses().items()
                    ],
                }
            )
        )

    def addresses(self):
        if self.address_prefix.count('.') == 2:  # two octets to fill
            return {
                pid: f'{self.address_prefix}{i // 250}.{i % 250 + 1}'
                for i, pid in enumerate(self.partitions)
            }
        return {
            pid: f'{self.address_prefix}{i + 1}'
            for i, pid in enumerate(self.partitions)
        }

    def software_path(self, url=SOFTWARE_RELEASE):
        """Where slapgrid keeps the software release ``url``."""
        return self.software_root / hashlib.md5(url.encode()).hexdigest()

    def install_software(self, url=SOFTWARE_RELEASE):
        path = self.software_path(url)
        (path / 'bin').mkdir(parents=True)
        (path / 'instance.cfg').write_text('[buildout]\nparts =\n')
        (path / 'bin' / 'buildout').write_text(BUILDOUT)
        (path / 'bin' / 'buildout').chmod(0o755)

    def launch_supervisord(self, linear_start=False):
        """slapgrid's supervisord, launched by slapgrid's own code
        (``createSupervisordConfiguration``, ``launchSupervisord``) in the
        stack's Python, as ``slapos node instance`` does, or by
        ``supervisor-slapos-supervisord --slapos-cfg``."""
        if linear_start:
            command = self.stack.module_command(
                'supervisor_slapos.linearstart', '--slapos-cfg', self.cfg
            )
        else:
            command = self.stack.code_command(LAUNCH, self.instance_root)
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        wait_until(self.running, 30, what='slapgrid supervisord RUNNING')

    def deploy_locally(self, partitions, run_entries=('web',)):
        """Leave in each of ``partitions`` what a deployment by slapgrid
        of the test software leaves (its buildout's ``etc/run`` entries,
        owned by the partition's user; ``P.conf`` as slapgrid writes it:
        the plugin's ``generate_partition_conf``, byte for byte slapgrid's),
        without running slapgrid, whose run over hundreds of partitions
        takes minutes. The master is not told (a node cut from its
        master)."""
        from supervisor_slapos.partitionconf import generate_partition_conf

        script = '#!/bin/sh\nexec sleep 100000\n'
        for pid in partitions:
            run = self.instance_root / pid / 'etc' / 'run'
            run.mkdir(parents=True, exist_ok=True)
            for path in (run.parent, run):
                os.chown(path, self.uid, self.gid)
            for name in run_entries:
                (run / name).write_text(script)
                (run / name).chmod(0o755)
                os.chown(run / name, self.uid, self.gid)
            (self.include_dir / f'{pid}.conf').write_text(
                generate_partition_conf(str(self.instance_root), pid)
            )

    def set_buildout(
        self, seconds=0, run_entries=('web',), url=SOFTWARE_RELEASE
    ):
        """From the next ``slapos node instance`` on, the software's
        buildout takes ``seconds`` and writes ``run_entries``."""
        path = self.software_path(url)
        (path / 'buildout-seconds').write_text(f'{seconds}\n')
        (path / 'run-entries').write_text(' '.join(run_entries) + '\n')

    # slapgrid

    def slapos_command(self, *args):
        """The command line of ``slapos ARGS --cfg slapos.cfg``."""
        return [self.stack.slapos, *args, '--cfg', str(self.cfg)]

    def slapos(self, *args, check=True, timeout=300):
        """Run ``slapos ARGS --cfg slapos.cfg``; the CompletedProcess."""
        result = subprocess.run(
            self.slapos_command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def instance(self, *args, check=True, timeout=300):
        return self.slapos(
            'node', 'instance', '--now', *args, check=check, timeout=timeout
        )

    def report(self, check=True):
        return self.slapos('node', 'report', '--now', check=check)

    def setup_command(self, *args):
        """``supervisor-slapos-setup ARGS`` as the stack's operator runs
        it (testbed.stacks.Stack.plugin_command)."""
        return self.stack.plugin_command(
            'supervisor-slapos-setup', 'supervisor_slapos.nodesetup', *args
        )

    def setup(self, *args, cfg=None):
        """``supervisor-slapos-setup --cfg slapos.cfg ARGS``, its boot
        entry in ``cron_dir`` running the stack's ``slapos``."""
        result = subprocess.run(
            self.setup_command(
                '--cfg',
                cfg or self.cfg,
                '--cron-dir',
                self.cron_dir,
                '--slapos',
                self.stack.slapos,
                *args,
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def request(self, state='started', title='inst0'):
        """Request an instance (the first one goes to ``slappart0``);
        return the master's answer."""
        return self.master.proxy.request(title, state=state)

    def ask_prerm(self, pid):
        """Make the next buildout of ``pid`` write a prerm script; return
        the file it writes its progress to and the file that lets it end."""
        proof = self.proof_dir / f'{pid}-prerm'
        release = self.proof_dir / f'{pid}-prerm-release'
        (self.instance_root / pid / 'prerm-request').write_text(
            f'{proof} {release}\n'
        )
        return proof, release

    # supervisord

    @property
    def rpc(self):
        return unix_rpc(self.socket)

    def running(self):
        try:
            return self.rpc.supervisor.getState()['statename'] == 'RUNNING'
        except (OSError, xmlrpc.client.Error):
            return False

    def supervisord_pid(self):
        return int(self.pidfile.read_text())

    def reload(self):
        """``supervisorctl -c <main config> reload`` as an operator would;
        returns when the new configuration is loaded and RUNNING."""
        before = self.rpc.supervisor.getPID()
        started = time.monotonic()
        result = self.ctl('-c', str(self.main_config), 'reload')
        assert result.returncode == 0, result.stdout + result.stderr

        def reloaded():
            # the same process; a reload re-creates every process group
            return (
                self.running()
                and self.rpc.supervisor.getPID() == before
                and self.rpc.supervisor.getState()
            )

        wait_until(reloaded, 60, what='supervisord reloaded')
        return started

    def ctl(self, *args):
        """The stock supervisorctl, in the stack's Python."""
        return subprocess.run(
            [self.stack.python, '-m', 'supervisor.supervisorctl', *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def slapos_ctl(self, *args):
        """``supervisorctl -c supervisorctl-slapos.conf slapos ARGS``."""
        return self.ctl('-c', str(self.client_config), 'slapos', *args)

    def processes(self, group):
        return group_processes(self.rpc, group)

    def wait_group_running(self, group, timeout=60):
        return wait_until(
            lambda: running_group_processes(self.rpc, group),
            timeout,
            what=f'{group} RUNNING',
        )

    # reboot

    def kill(self, timeout=30):
        """A power cut: SIGKILL supervisord and every process it started
        (frozen first, so that it respawns nothing), then wait until they
        are all dead (reaped or zombies)."""
        try:
            pid = self.supervisord_pid()
        except (OSError, ValueError):
            return
        kill_tree(pid, timeout)

    cleanup = kill

    def remove_timestamps(self, partition_base_name='slappart'):
        """What ``slapos node boot`` does last (slapos.core 1.26.1, once
        ``node format`` and ``node bang`` succeeded): delete every
        ``<instance_root>/<base>*/.timestamp``, so that slapgrid's next run
        processes (builds out) every partition again. Returns how many."""
        removed = 0
        for path in self.instance_root.glob(
            f'{partition_base_name}*/.timestamp'
        ):
            path.unlink()
            removed += 1
        return removed

    def start_boot_entry(self, log=subprocess.DEVNULL):
        """Start the plugin's boot entry (``boot_entry``, written
        by ``setup()``) as cron would: ``/bin/sh``, an empty
        environment, no terminal, output to ``log``; its Popen. It exits
        once supervisord has daemonized (cron's limits: ``cron_limits``)."""
        [(_, command)] = reboot_entries(self.boot_entry.read_text())
        shell_command, _ = cron_split(command)
        return subprocess.Popen(
            ['/bin/sh', '-c', shell_command],
            env={},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=cron_limits,
        )


def make_root():
    """A directory every partition user can traverse (pytest's own
    temporary directories are 0700: buildout, run as the partition's
    user, could not reach its software)."""
    root = tempfile.mkdtemp(prefix='slapgrid-node-')
    os.chmod(root, 0o711)
    return Path(root)


def remove_root(root):
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_node(**kwargs):
    """A SlapgridNode (not prepared yet) in a root of its own with a
    master of its own (``node.master``); afterwards the node is killed,
    the master stopped and the root removed, whatever happened."""
    with contextlib.ExitStack() as stack:
        root = make_root()
        stack.callback(remove_root, root)
        master = NodeMaster(root / 'master', stack=kwargs.get('stack'))
        stack.callback(master.close)
        node = SlapgridNode(root, master, **kwargs)
        stack.callback(node.cleanup)
        yield node
