"""``supervisor-slapos-setup``: install the plugin on a node slapgrid runs.

slapgrid owns ``<instance_root>/etc/supervisord.conf`` (every online
``slapos node instance`` rewrites it from its template), so the plugin's
sections go into the one place that survives, its include directory, as a
node file; and since supervisorctl reads ``[ctlplugin:x]`` only from the
file it is given, a client configuration for slapgrid's socket goes beside
it::

    supervisor-slapos-setup --cfg /etc/opt/slapos/slapos.cfg
    supervisorctl -c <instance_root>/etc/supervisorctl-slapos.conf slapos status

The texts are pure functions of their inputs: every run writes the same
bytes.
"""
import argparse
import os
import sys
from dataclasses import dataclass

from supervisor_slapos import __version__
from supervisor_slapos.files import atomic_remove, atomic_write
from supervisor_slapos.slaposcfg import read_slapos_cfg

NODE_FILE = 'supervisor_slapos.conf'
CLIENT_FILE = 'supervisorctl-slapos.conf'
LISTENER_SCRIPT = 'supervisor-slapos-listener'
LISTENER_LOG = 'supervisor-slapos-listener.log'
# slapos.core names its socket <instance_root>/sv.sock, or keeps the
# legacy <instance_root>/supervisord.socket where that one exists
# (slapos.grid.svcbackend).
SOCKET = 'sv.sock'
LEGACY_SOCKET = 'supervisord.socket'

TAKES_EFFECT = (
    '{what} take effect at the next start or reload of supervisord. A reload '
    'restarts every process of the node: wait for the next reboot or a '
    'maintenance window (supervisorctl -c {main} reload).')

NODE_TEMPLATE = """\
; Written by supervisor-slapos-setup --cfg {cfg}; rewritten at each run.
; A node file: no partition owns it, the plugin never touches it.

[rpcinterface:slapos]
supervisor.rpcinterface_factory = supervisor_slapos.rpcinterface:make_slapos_rpcinterface
instance_root = {instance_root}
include_dir = {include_dir}
state_dir = {state_dir}

[eventlistener:slapos]
command = {listener} --cfg {cfg} --slapgrid
events = SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60
buffer_size = 100
autorestart = true
startsecs = 0
stderr_logfile = {log}
stderr_logfile_maxbytes = 10MB
stderr_logfile_backups = 3
"""

CLIENT_TEMPLATE = """\
; Written by supervisor-slapos-setup --cfg {cfg}; rewritten at each run.
; supervisorctl -c {path} slapos status

[supervisorctl]
serverurl = unix://{socket}

[ctlplugin:slapos]
supervisor.ctl_factory = supervisor_slapos.controllerplugin:make_slapos_controllerplugin
"""


@dataclass(frozen=True)
class NodePaths:
    """Where slapgrid and the plugin keep things under ``instance_root``."""
    instance_root: str

    @property
    def main_config(self):
        return os.path.join(self.instance_root, 'etc', 'supervisord.conf')

    @property
    def include_dir(self):
        return os.path.join(self.instance_root, 'etc', 'supervisord.conf.d')

    @property
    def node_file(self):
        return os.path.join(self.include_dir, NODE_FILE)

    @property
    def client_file(self):
        return os.path.join(self.instance_root, 'etc', CLIENT_FILE)

    @property
    def state_dir(self):
        return os.path.join(self.instance_root, 'var', 'supervisor_slapos')

    @property
    def listener_log(self):
        return os.path.join(self.instance_root, 'var', 'log', LISTENER_LOG)

    def socket(self, exists=os.path.exists):
        legacy = os.path.join(self.instance_root, LEGACY_SOCKET)
        if exists(legacy):
            return legacy
        return os.path.join(self.instance_root, SOCKET)


def listener_command(python=sys.executable, exists=os.path.exists):
    """The listener by absolute path (supervisord runs with an empty
    environment on a slapgrid node: no PATH): the console script beside
    ``python``, else ``python -m supervisor_slapos.listener``."""
    script = os.path.join(os.path.dirname(python), LISTENER_SCRIPT)
    if exists(script):
        return script
    return f'{python} -m supervisor_slapos.listener'


def node_file_text(paths: NodePaths, cfg: str, listener: str) -> str:
    """The text of ``supervisor_slapos.conf``."""
    return NODE_TEMPLATE.format(
        cfg=cfg, instance_root=paths.instance_root,
        include_dir=paths.include_dir, state_dir=paths.state_dir,
        listener=listener, log=paths.listener_log)


def client_file_text(paths: NodePaths, cfg: str, socket: str) -> str:
    """The text of ``supervisorctl-slapos.conf``."""
    return CLIENT_TEMPLATE.format(cfg=cfg, path=paths.client_file,
                                  socket=socket)


def node_paths(cfg_path) -> NodePaths:
    """The node's paths from its slapos.cfg; ValueError when it cannot be
    read, has no ``[slapos] instance_root``, or slapgrid has not prepared
    that instance root yet."""
    config = read_slapos_cfg(cfg_path)
    if config.instance_root is None:
        raise ValueError(f'{config.path}: no [slapos] instance_root')
    paths = NodePaths(os.path.abspath(config.instance_root))
    if not os.path.isdir(paths.include_dir):
        raise ValueError(
            f'{paths.include_dir} does not exist ([slapos] instance_root '
            f'in {config.path}); slapgrid creates it: run slapos node '
            f'instance once first')
    return paths


def install(cfg_path, out):
    paths = node_paths(cfg_path)
    cfg = os.path.abspath(cfg_path)
    texts = {
        paths.node_file: node_file_text(paths, cfg, listener_command()),
        paths.client_file: client_file_text(paths, cfg, paths.socket()),
    }
    for path, text in texts.items():
        atomic_write(path, text)
        print(f'wrote {path}', file=out)
    print(TAKES_EFFECT.format(what='They', main=paths.main_config),
          file=out)
    print(f'Then: supervisorctl -c {paths.client_file} slapos status',
          file=out)


def remove(cfg_path, out):
    paths = node_paths(cfg_path)
    for path in (paths.node_file, paths.client_file):
        word = 'removed' if atomic_remove(path) else 'not there:'
        print(f'{word} {path}', file=out)
    print(TAKES_EFFECT.format(what='Removals', main=paths.main_config),
          file=out)


def make_parser():
    parser = argparse.ArgumentParser(
        prog='supervisor-slapos-setup',
        description='Install supervisor_slapos into the supervisord that '
                    'slapgrid runs: write its node file into '
                    '<instance_root>/etc/supervisord.conf.d and a '
                    'supervisorctl configuration for slapgrid\'s socket.')
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s {__version__}')
    parser.add_argument('--cfg', metavar='F', required=True,
                        help='the node\'s slapos.cfg (e.g. '
                             '/etc/opt/slapos/slapos.cfg)')
    parser.add_argument('--remove', action='store_true',
                        help='delete both files instead')
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    action = remove if args.remove else install
    try:
        action(args.cfg, sys.stdout)
    except (ValueError, OSError) as e:
        message = ' '.join(str(e).split())  # configparser's span lines
        print(f'supervisor-slapos-setup: error: {message}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
