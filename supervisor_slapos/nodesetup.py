r"""``supervisor-slapos-setup``: install the plugin on a node slapgrid runs.

slapgrid owns ``<instance_root>/etc/supervisord.conf`` (every online
``slapos node instance`` rewrites it from its template), so the plugin's
sections go into the one place that survives, its include directory, as a
node file; and since supervisorctl reads ``[ctlplugin:x]`` only from the
file it is given, a client configuration for slapgrid's socket goes beside
it::

    supervisor-slapos-setup --cfg /etc/opt/slapos/slapos.cfg
    supervisorctl -c <instance_root>/etc/supervisorctl-slapos.conf \
        slapos status

On such a node nothing starts supervisord at boot but slapgrid's cron run,
after it has tried the master; so the setup also writes a boot entry,
``<cron_dir>/supervisor-slapos``, that starts supervisord at boot as
slapos.core's own ``slapos node supervisord --cfg F`` does (slapgrid's
configuration and launch, without the master, in the Python and
``sys.path`` of the node's ``slapos`` command), through the plugin's
launcher, ``supervisor-slapos-supervisord``, so that supervisord's first
read of its configuration is linear too.

The texts are pure functions of their inputs: every run writes the same
bytes. Every path goes through one of two writers of supervisord's syntax
(:func:`supervisord_value`, :func:`supervisord_command`) and one of cron's
(:func:`cron_command`); what they cannot write faithfully is refused
before anything is written.
"""

import argparse
import http.client
import os
import re
import shlex
import shutil
import socket
import stat
import sys
import xmlrpc.client
from dataclasses import dataclass

from supervisor_slapos import CTL_FACTORY, RPC_FACTORY, __version__, nodecheck
from supervisor_slapos.files import atomic_remove, atomic_write
from supervisor_slapos.linearread import HERE
from supervisor_slapos.setuprecord import (
    SetupRecord,
    read_setup_record,
    record_path,
    remove_setup_record,
    write_setup_record,
)
from supervisor_slapos.slaposcfg import read_slapos_cfg

NODE_FILE = 'supervisor_slapos.conf'
CLIENT_FILE = 'supervisorctl-slapos.conf'
BOOT_FILE = 'supervisor-slapos'
SETUP_SCRIPT = 'supervisor-slapos-setup'
LISTENER_SCRIPT = 'supervisor-slapos-listener'
LAUNCHER_SCRIPT = 'supervisor-slapos-supervisord'
LISTENER_LOG = 'supervisor-slapos-listener.log'
BOOT_LOG = 'supervisor-slapos-boot.log'
CRON_DIR = '/etc/cron.d'
# slapos.core names its socket <instance_root>/sv.sock, or keeps the
# legacy <instance_root>/supervisord.socket where that one exists
# (slapos.grid.svcbackend).
SOCKET = 'sv.sock'
LEGACY_SOCKET = 'supervisord.socket'
# supervisord and slapgrid read their files, cron reads its: the node and
# client files are private (they name the node's paths), a cron.d file
# must not be writable by group or others (cron ignores it then).
PRIVATE = 0o600
CRON_MODE = 0o644

TAKES_EFFECT = (
    '{what} take effect at the next start or reload of supervisord. A reload '
    'restarts every process of the node: wait for the next reboot or a '
    'maintenance window ({ctl} -c {main} reload).'
)
NOTHING_CHANGED = 'Nothing changed: {what}.'

NODE_TEMPLATE = """\
; Written by supervisor-slapos-setup --cfg {cfg}; rewritten at each run.
; A node file: no partition owns it, the plugin never touches it.

[rpcinterface:slapos]
supervisor.rpcinterface_factory = {rpc_factory}
instance_root = {instance_root}
include_dir = {include_dir}
state_dir = {state_dir}

[eventlistener:slapos]
command = {command}
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
supervisor.ctl_factory = {ctl_factory}
"""

BOOT_TEMPLATE = """\
# Written by supervisor-slapos-setup --cfg {cfg}; rewritten at each run,
# removed by supervisor-slapos-setup --cfg {cfg} --remove.
# At boot, start the node's supervisord at once, as slapgrid does (as slapos
# node supervisord does: slapgrid's supervisord.conf, then its launch, in the
# Python and sys.path of the slapos command named), its first configuration
# read linear, without waiting for slapgrid's cron run or the master: the
# plugin's listener then starts the started partitions offline. slapgrid's
# later runs find it running.
@reboot root {command}
"""


# supervisord's syntax and cron's: every path written goes through here


def _refuse_line_breaks(text):
    if '\n' in text or '\r' in text:
        raise ValueError(
            f'{text!r} holds a line break, which neither '
            f'supervisord\'s configuration nor cron can hold'
        )


# configparser (as supervisord sets it up) ends a value at ";" or "#"
# after whitespace (an inline comment), and supervisord replaces
# "%(here)s" in every value before its own "%" expansion.
_INLINE_COMMENT = re.compile(r'\s[;#]')


def supervisord_value(text, expansions=1):
    """``text`` (a path) as a value in supervisord's configuration, which
    expands ``%`` in it ``expansions`` times: once in most values, twice in
    a program's ``stdout_logfile``/``stderr_logfile`` (supervisor 4.3.0's
    ``saneget`` then ``_processes_from_section``), so doubled once or
    twice. ValueError for what its parser would not read back as it is (a
    line break, whitespace at either end, whitespace before a ``;`` or
    ``#``, ``%(here)s``)."""
    _refuse_line_breaks(text)
    if text != text.strip():
        raise ValueError(
            f'{text!r} begins or ends with whitespace, which '
            f'supervisord\'s configuration drops'
        )
    if _INLINE_COMMENT.search(text):
        raise ValueError(
            f'{text!r} holds whitespace before a ";" or "#", '
            f'which supervisord\'s configuration reads as a '
            f'comment'
        )
    if HERE in text:
        raise ValueError(
            f'{text!r} holds {HERE}, which supervisord replaces in every value'
        )
    return text.replace('%', '%' * 2**expansions)


def supervisord_command(argv):
    """``argv`` as a ``command`` value, which supervisord expands (``%``)
    then splits with ``shlex.split``: each word quoted for shlex, ``%``
    doubled. Quoting can always keep a ``;`` or ``#`` away from whitespace
    and break ``%(here)s`` (an empty ``''`` between); only a line break is
    refused (ValueError)."""
    words = []
    for word in argv:
        _refuse_line_breaks(word)
        # shlex.quote puts any word holding whitespace, ";", "#" or "("
        # inside single quotes, where '' is an empty piece
        words.append(re.sub(r'(\s)(?=[;#])', r"\1''", shlex.quote(word)))
    return ' '.join(words).replace('%', '%%').replace('%%(', "%%''(")


def cron_command(argv, append_to):
    """A cron command line running ``argv`` with its output appended to
    ``append_to``: words quoted for ``/bin/sh``, then every ``%`` (which
    cron turns into a newline) escaped as ``\\%``. ValueError for a line
    break."""
    for word in (*argv, append_to):
        _refuse_line_breaks(word)
    line = ' '.join(map(shlex.quote, argv))
    line += f' >> {shlex.quote(append_to)} 2>&1'
    # cron reads "\\%" as "%" and leaves any other backslash alone, so a
    # backslash (only ever inside single quotes here) must not precede a
    # "%": an empty '' between keeps both
    line = line.replace('\\%', "\\''%")
    return line.replace('%', '\\%')


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

    @property
    def boot_log(self):
        return os.path.join(self.instance_root, 'var', 'log', BOOT_LOG)

    def socket(self, exists=os.path.exists):
        legacy = os.path.join(self.instance_root, LEGACY_SOCKET)
        if exists(legacy):
            return legacy
        return os.path.join(self.instance_root, SOCKET)


def script_dirs(python=sys.executable, argv0=None):
    """Where this installation's console scripts are: beside the running
    setup script (a buildout's ``bin/``, whose Python is elsewhere), then
    beside ``python`` (a virtualenv's ``bin/``)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    dirs = []
    if os.path.basename(argv0) == SETUP_SCRIPT:
        dirs.append(os.path.dirname(os.path.abspath(argv0)))
    dirs.append(os.path.dirname(python))
    return dirs


def console_script(
    name, module, python=sys.executable, argv0=None, exists=os.path.exists
):
    """This installation's console script ``name`` as an argv, by absolute
    path (supervisord runs with an empty environment on a slapgrid node:
    no PATH; another supervisorctl has no plugin), else
    ``python -m module``."""
    for directory in script_dirs(python, argv0):
        script = os.path.join(directory, name)
        if exists(script):
            return [script]
    return [python, '-m', module]


def listener_command(python=sys.executable, argv0=None, exists=os.path.exists):
    """The listener's argv: its console script, else ``python -m``."""
    return console_script(
        LISTENER_SCRIPT, 'supervisor_slapos.listener', python, argv0, exists
    )


def launcher_command(python=sys.executable, argv0=None, exists=os.path.exists):
    """The launcher's argv (``supervisor-slapos-supervisord``): its
    console script, else ``python -m``."""
    return console_script(
        LAUNCHER_SCRIPT, 'supervisor_slapos.linearstart', python, argv0, exists
    )


def supervisorctl_command(
    python=sys.executable, argv0=None, exists=os.path.exists
):
    """The supervisorctl that has the plugin (this installation's) as an
    argv, for the advice the setup prints."""
    return console_script(
        'supervisorctl', 'supervisor.supervisorctl', python, argv0, exists
    )


def find_slapos(given=None, which=shutil.which):
    """The ``slapos`` command for the boot entry, by absolute path:
    ``given``, else the one on PATH; ValueError when there is none."""
    if given is None:
        found = which('slapos')
        if found is None:
            raise ValueError(
                'no slapos command on PATH: give the one that '
                'runs this node with --slapos PATH (e.g. '
                '/opt/slapos/bin/slapos)'
            )
        return os.path.abspath(found)
    path = os.path.abspath(given)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ValueError(f'--slapos {given}: not an executable file')
    return path


def node_file_text(paths: NodePaths, cfg: str, listener) -> str:
    """The text of ``supervisor_slapos.conf`` (``listener``: its argv)."""
    _refuse_line_breaks(cfg)
    return NODE_TEMPLATE.format(
        cfg=cfg,
        instance_root=supervisord_value(paths.instance_root),
        include_dir=supervisord_value(paths.include_dir),
        state_dir=supervisord_value(paths.state_dir),
        command=supervisord_command([*listener, '--cfg', cfg, '--slapgrid']),
        log=supervisord_value(paths.listener_log, expansions=2),
        rpc_factory=RPC_FACTORY,
    )


def client_file_text(paths: NodePaths, cfg: str, socket: str) -> str:
    """The text of ``supervisorctl-slapos.conf``."""
    _refuse_line_breaks(cfg)
    _refuse_line_breaks(paths.client_file)
    return CLIENT_TEMPLATE.format(
        cfg=cfg,
        path=paths.client_file,
        socket=supervisord_value(socket),
        ctl_factory=CTL_FACTORY,
    )


def boot_file_text(paths: NodePaths, cfg: str, slapos: str, launcher) -> str:
    """The text of the boot entry, ``<cron_dir>/supervisor-slapos``
    (``launcher``: the launcher's argv)."""
    return BOOT_TEMPLATE.format(
        cfg=cfg,
        command=cron_command(
            [*launcher, '--slapos-cfg', cfg, '--slapos', slapos],
            paths.boot_log,
        ),
    )


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
            f'instance once first'
        )
    return paths


def boot_file(cron_dir, must_exist=True):
    """The boot entry's path; ValueError when ``cron_dir`` is not a
    directory (and ``must_exist``)."""
    if must_exist and not os.path.isdir(cron_dir):
        raise ValueError(
            f'--cron-dir {cron_dir}: not a directory (is cron '
            f'installed? give its cron.d with --cron-dir DIR)'
        )
    return os.path.join(os.path.abspath(cron_dir), BOOT_FILE)


def holds(path, text, mode):
    """Whether ``path`` already has exactly ``text`` and ``mode``."""
    try:
        with open(path, 'rb') as f:
            same = f.read() == text.encode('utf-8')
        return same and stat.S_IMODE(os.stat(path).st_mode) == mode
    except FileNotFoundError:
        return False


def install(cfg_path, out, cron_dir=CRON_DIR, slapos=None):
    paths = node_paths(cfg_path)
    cfg = os.path.abspath(cfg_path)
    boot = boot_file(cron_dir)
    ctl = shlex.join(supervisorctl_command())
    # every text first: a path that cannot be written refuses them all
    files = [
        (
            boot,
            boot_file_text(
                paths, cfg, find_slapos(slapos), launcher_command()
            ),
            CRON_MODE,
        ),
        (
            paths.node_file,
            node_file_text(paths, cfg, listener_command()),
            PRIVATE,
        ),
        (
            paths.client_file,
            client_file_text(paths, cfg, paths.socket()),
            PRIVATE,
        ),
    ]
    changed = [
        path for path, text, mode in files if not holds(path, text, mode)
    ]
    record = SetupRecord(
        version=__version__,
        cfg=cfg,
        boot_entry=boot,
        files=tuple(path for path, _, _ in files),
    )
    record_changed = recorded(paths) != record
    for directory in {
        *map(os.path.dirname, changed),
        *([existing_parent(paths.state_dir)] if record_changed else []),
    }:
        if not os.access(directory, os.W_OK):
            raise ValueError(
                f'cannot write into {directory} '
                f'(run as the user that owns it, root for '
                f'{CRON_DIR})'
            )
    for path, text, mode in files:
        if path in changed:
            atomic_write(path, text, mode)
            print(f'wrote {path}', file=out)
        else:
            print(f'unchanged: {path}', file=out)
    if record_changed:
        # where it wrote, for --remove and slapos check
        write_setup_record(paths.state_dir, record)
        print(f'recorded {record_path(paths.state_dir)}', file=out)
    if paths.node_file in changed:
        print(
            TAKES_EFFECT.format(
                what='The plugin and its listener',
                ctl=ctl,
                main=shlex.quote(paths.main_config),
            ),
            file=out,
        )
    if boot in changed:
        print(
            f'At every boot, {BOOT_FILE} starts supervisord at once '
            f'(as slapos node supervisord does), its output in '
            f'{paths.boot_log}.',
            file=out,
        )
    if not (changed or record_changed):
        print(
            NOTHING_CHANGED.format(
                what='every file already holds these bytes'
            ),
            file=out,
        )
    # after an upgrade, the same node file names other code: supervisord
    # runs the old one until it restarts
    advice = nodecheck.restart_advice(
        loaded_version(paths.socket()), __version__
    )
    if advice is not None:
        print(advice[0].upper() + advice[1:] + '.', file=out)
    print(
        f'Then: {ctl} -c {shlex.quote(paths.client_file)} slapos check',
        file=out,
    )


def existing_parent(path):
    """``path`` or its nearest ancestor that exists (where making it
    writes)."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def recorded(paths):
    """The setup record of this node; None when there is none or it
    cannot be read (the setup writes it again, --remove deletes it)."""
    try:
        return read_setup_record(paths.state_dir)
    except ValueError:
        return None


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP on a unix socket, with a timeout."""

    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path, timeout):
        super().__init__()
        self.socket_path, self.timeout = path, timeout

    def make_connection(self, host):
        return UnixHTTPConnection(self.socket_path, self.timeout)


def loaded_version(socket_path, timeout=2):
    """The supervisor_slapos version the supervisord at ``socket_path``
    loaded (``nodecheck.loaded_version``); the installed version (no
    advice) when supervisord does not answer or has no plugin loaded (then
    the node file's advice says it all)."""
    rpc = xmlrpc.client.ServerProxy(
        'http://localhost', transport=UnixTransport(socket_path, timeout)
    )
    try:
        return nodecheck.loaded_version(rpc.slapos)
    except (
        nodecheck.PluginNotLoaded,
        OSError,
        xmlrpc.client.Error,
        http.client.HTTPException,
    ):
        return __version__  # no plugin loaded, or no supervisord


def remove(cfg_path, out, cron_dir=None):
    """Delete the three files: the boot entry in ``cron_dir``, else where
    the setup recorded it, else in CRON_DIR; and every other file the
    record names."""
    paths = node_paths(cfg_path)
    record = recorded(paths)
    if cron_dir is None and record is not None:
        boot = record.boot_entry
    else:
        # none there: nothing to do
        boot = boot_file(cron_dir or CRON_DIR, must_exist=False)
    targets = [paths.node_file, paths.client_file, boot]
    targets += [
        path
        for path in (record.files if record else ())
        if path not in targets
    ]
    removed = []
    for path in targets:
        if atomic_remove(path):
            removed.append(path)
            print(f'removed {path}', file=out)
        else:
            print(f'not there: {path}', file=out)
    if remove_setup_record(paths.state_dir):
        print(f'removed {record_path(paths.state_dir)}', file=out)
    if paths.node_file in removed:
        ctl = shlex.join(supervisorctl_command())
        print(
            TAKES_EFFECT.format(
                what='Removals', ctl=ctl, main=shlex.quote(paths.main_config)
            ),
            file=out,
        )
    if not removed:
        print(
            NOTHING_CHANGED.format(what='none of these files was there'),
            file=out,
        )


class PipeSafe:
    """An output stream whose reader may go away (``setup | head -1``):
    what is left to say is dropped, the work goes on to its end."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        if self.stream is not None:
            try:
                self.stream.write(text)
                self.stream.flush()
            except BrokenPipeError:
                # nothing more to say, even at the interpreter's exit
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
                os.close(devnull)
                self.stream = None
        return len(text)


def make_parser():
    parser = argparse.ArgumentParser(
        prog='supervisor-slapos-setup',
        description='Install supervisor_slapos into the supervisord that '
        'slapgrid runs: write its node file into '
        '<instance_root>/etc/supervisord.conf.d, a '
        'supervisorctl configuration for slapgrid\'s socket, and '
        'a boot entry that starts supervisord at boot.',
    )
    parser.add_argument(
        '--version', action='version', version=f'%(prog)s {__version__}'
    )
    parser.add_argument(
        '--cfg',
        metavar='F',
        required=True,
        help='the node\'s slapos.cfg (e.g. /etc/opt/slapos/slapos.cfg)',
    )
    parser.add_argument(
        '--cron-dir',
        metavar='DIR',
        help=f'where to write the boot entry, {BOOT_FILE} '
        f'(default: {CRON_DIR}; with --remove: where '
        f'the setup wrote it)',
    )
    parser.add_argument(
        '--slapos',
        metavar='PATH',
        help='the node\'s slapos command, whose Python and '
        'sys.path the boot entry starts supervisord in '
        '(default: the one on PATH)',
    )
    parser.add_argument(
        '--remove', action='store_true', help='delete the three files instead'
    )
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    out = PipeSafe(sys.stdout)
    try:
        if args.remove:
            remove(args.cfg, out, args.cron_dir)
        else:
            install(args.cfg, out, args.cron_dir or CRON_DIR, args.slapos)
    except (ValueError, OSError) as e:
        message = ' '.join(str(e).split())  # configparser's span lines
        print(f'supervisor-slapos-setup: error: {message}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
