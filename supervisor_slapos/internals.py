"""The uses the plugin makes of supervisor's (and CPython's) internals,
each with the versions it was read against, and its guard.

Supervisor's public surface (its RPC interface, its config parser) does
not cover what the plugin needs. What it leans on instead is listed
here. Each use is made only on what it was checked against, supervisor
4.2.5 and 4.3.0 (``CHECKED_VERSIONS``); on anything else supervisor's
own behaviour stays, and one line of the log (supervisord's, or
supervisorctl's stderr for the help) says why. The floor spawn and
``give_up_spawn`` check supervisor's version (the floor spawn Python's
too); ``add_sections`` probes configparser; the others check the sha256
of the supervisor source they rely on, the same in 4.2.5 and 4.3.0.

The floor spawn (``floorspawn``), read in supervisor 4.2.5 and 4.3.0
(``supervisor/process.py`` is the same file in both):

- ``Subprocess.spawn()`` makes the state change to STARTING (and its
  event), turns the command into ``(filename, argv)`` with
  ``get_execv_args()`` (which also checks, in supervisord, that the file
  exists and is executable), makes the pipes and log dispatchers with
  ``config.make_dispatchers`` into ``process.pipes``, then calls
  ``config.options.fork()`` with no argument. On a non-zero pid it takes
  the parent's path (closes the child's pipe ends, logs ``spawned:``,
  records the pid); on 0 it runs its own child code; on ``OSError`` it
  logs and backs off (and closes the pipes). ``startProcess`` spawns only
  the process it names: the floor replaces ``options.fork`` for the time
  of that call.
- The child (``_spawn_as_child``): ``setpgrp()``; the child ends of the
  pipes on 0, 1 and 2 (stdout's on 2 with ``redirect_stderr``); fds 3 to
  ``options.minfds`` closed (all those supervisord opens are
  close-on-exec); then ``options.drop_privileges(config.uid)``; the
  environment of ``child_environment`` below; ``chdir(config.directory)``;
  ``umask(config.umask)``; ``execve(filename, argv, env)``, which refuses
  an environment variable name that is empty or holds ``=`` past its
  first character, and a NUL byte. Any failure writes ``supervisor: ...``
  on fd 2 and exits 127. Signals ignored in supervisord (SIGPIPE,
  SIGXFSZ: CPython ignores them) stay ignored across its exec.
- ``ProcessConfig`` fields read: ``name``, ``uid`` (an int:
  ``processes_from_section`` turns ``user=`` into a uid), ``directory``,
  ``umask`` (None when unset), ``redirect_stderr``, ``environment``,
  ``serverurl``; ``options.logger``, ``options.minfds``.
- ``drop_privileges(user)``: ``user`` a name or a uid; nothing is done
  when it is already supervisord's uid; a non-root supervisord fails;
  else the groups are the user's primary gid, then every group that
  lists the user's name as a member (``supervisor_groups``: the primary
  gid twice when its group lists the user), then ``setgid``, then
  ``setuid``.

Read in CPython's ``Lib/subprocess.py``: 3.11, 3.12 and 3.13 pass
``_posixsubprocess.fork_exec`` the 23 positional arguments of
``fork_exec_args`` (``FORK_EXEC_PYTHONS``); the error pipe's write end
must be among the fds kept (it stays close-on-exec). It uses vfork()
when no uid, gid or groups change and no preexec function is asked: gid
and uid must be None, as ``Popen`` passes them (3.11 takes -1 for a
change to gid -1, hence a fork).
3.9 and 3.10 pass it 21, with no process group (only ``setsid``): a
child in its own group there needs a preexec function, hence Python in
the child, so the floor uses glibc's ``posix_spawn`` there
(``POSIX_SPAWN_PYTHONS``), with ``POSIX_SPAWN_SETPGROUP``. Read in
glibc's ``spawn.h`` and seen in glibc 2.36: its child sets glibc's own
signals (32 and 33, SIGCANCEL and SIGSETXID) to SIG_IGN, which stays
across the exec (supervisor's child has them as supervisord has them:
SIG_DFL unless supervisord ignores them, as it does when started by a
glibc posix_spawn, e.g. by GNU make), unless they are in the
``POSIX_SPAWN_SETSIGDEF`` set; ``sigaddset`` (hence
``os.posix_spawn(setsigdef=)``) refuses them, so the floor calls
glibc's functions with ctypes and a set made bit by bit.

The configuration parser: ``ServerOptions.read_config`` looks its class up
as ``supervisor.options.UnhosedConfigParser`` at each read;
``install_parser`` puts ``linearread.LinearConfigParser`` there (which
overrides configparser's private ``_read`` and ``_sections``).

The incremental read (``incrementalread``), read in supervisor 4.2.5 and
4.3.0: ``install_read_config`` puts it in place of
``ServerOptions.read_config``; it runs supervisor's own ``read_config``
with ``reading_with``'s parser class and a recorder of
``logfile_name`` (``read_config`` and ``_processes_from_section`` look
both up in ``supervisor.options`` at each call), and on the options
object, for that call only, its own ``process_groups_from_parser`` and
``processes_from_section`` (which ``read_config`` and
``process_groups_from_parser`` call on ``self``), each calling
supervisor's. What a group's configs depend on beyond its sections is
read in ``_processes_from_section`` and ``process_groups_from_parser``
(those two differ between 4.2.5 and 4.3.0 only in an eventlistener's
``except``): ``here``, ``host_node_name``, ``environ_expansions``, user
and group names, ``logfile_name``'s check that a log path's directory
exists (``existing_dirpath``).

The help: supervisorctl's ``Controller.do_help`` asks every plugin about
every topic; ``route_help`` replaces it on the controller.

A spawn that raised (``give_up_spawn``, supervisor 4.2.5 and 4.3.0):
``Subprocess.record_spawnerr``, ``change_state`` and ``give_up`` make a
process left STARTING with no pid FATAL, as supervisor's own failed spawn
ends once its retries are spent.

supervisord's loop (``offlinestart``), read in supervisor 4.2.5 and 4.3.0
(``Supervisor.runforever`` differs between them only where a poll event
comes from an fd that is not in the map): at each turn it asks every
entry of ``options.get_socket_map()`` (asyncore's global map, kept across
a reload) ``readable()`` and ``writable()``, registers the fd in its
poller accordingly, ``poll()``s (for up to 1 s) and calls
``handle_write_event()`` (then ``writable()`` again, unregistering the
fd when false) or ``handle_read_event()``, ``handle_error()`` on an
exception. A reload closes every fd from 3 up (``cleanup_fds``) but
leaves the map's entries. The event listeners' command lines are
``process_configs[i].command`` of the ``EventListenerPoolConfig`` of
``options.process_group_configs`` (``directory`` their working directory,
None: supervisord's).

The loaded configs: ``options.process_group_configs`` is what
``addProcessGroup`` and ``diff_to_active`` (``reloadConfig``) compare the
loaded groups with; ``replace_group_configs`` keeps it in step with the
groups the plugin adds and removes.

One partition's files read as supervisord's full read would
(``partitionparse``; ``ServerOptions.read_config``): each file is parsed
alone, then its sections go into the parser of the whole partition
(``add_sections``: configparser's ``_sections`` and ``_proxies``, as
``read_string`` leaves them); ``read_config`` then lets
``process_groups_from_parser`` build the groups and merges the
``[supervisord] environment`` under each process's own
(``groups_from_parser``).

The loaded groups by name (``follow_groups``):
``Supervisor.add_process_group`` and ``remove_process_group`` are the
only writers of ``process_groups`` once supervisord runs, and each
notifies ``ProcessGroupAddedEvent`` or ``ProcessGroupRemovedEvent``
(``events.clear()`` at the start of ``run()``, before the RPC interfaces
are made).

slapgrid's offline pass: ``SupervisorNamespaceRPCInterface.startAllProcesses``
lists the processes with ``self._getAllProcesses()`` (``(group, process)``
pairs), once, then returns a deferred that starts those not running;
``spare_in_start_all`` runs it with that list filtered, so that it leaves
out the groups of a partition slapgrid is destroying.
"""

import configparser
import contextlib
import functools
import grp
import hashlib
import inspect
import os
import sys
import weakref

import supervisor.datatypes
import supervisor.options
import supervisor.rpcinterface
import supervisor.supervisorctl
import supervisor.supervisord
from supervisor import events
from supervisor.options import VERSION as SUPERVISOR_VERSION
from supervisor.process import Subprocess
from supervisor.states import ProcessStates

CHECKED_VERSIONS = ('4.2.5', '4.3.0')
FORK_EXEC_PYTHONS = ((3, 11), (3, 12), (3, 13))
POSIX_SPAWN_PYTHONS = ((3, 9), (3, 10))
POSIX_SPAWN_SETPGROUP, POSIX_SPAWN_SETSIGDEF = 0x02, 0x04  # glibc's
GLIBC_SIGNALS_TO_DEFAULT = (32, 33)


def spawn_unsupported(version=None, python=None):
    """Why the floor spawn must not be used here (a sentence), or None
    when the internals it relies on are the ones read above."""
    version = SUPERVISOR_VERSION if version is None else version
    python = sys.version_info[:2] if python is None else python
    if version not in CHECKED_VERSIONS:
        return (
            f'supervisor {version} is not one the floor spawn was '
            f'checked against ({", ".join(CHECKED_VERSIONS)})'
        )
    if python not in FORK_EXEC_PYTHONS + POSIX_SPAWN_PYTHONS:
        return f'Python {python[0]}.{python[1]}: its fork_exec was not checked'
    return None


def process_unsupported(process):
    """Why the floor spawn must not be used for ``process``, or None."""
    if type(process) is not Subprocess:
        return f'a {type(process).__name__}, not a plain Subprocess'
    if 'spawn' in vars(process) or 'fork' in vars(process.config.options):
        return 'its spawn or fork is already replaced'
    return None


def child_pipes(process):
    """The child's (stdin, stdout, stderr) fds of a process being spawned,
    as supervisor's child puts them on 0, 1, 2."""
    pipes = process.pipes
    stdout = pipes['child_stdout']
    stderr = (
        stdout if process.config.redirect_stderr else pipes['child_stderr']
    )
    return pipes['child_stdin'], stdout, stderr


def child_environment(process):
    """The environment supervisor's child execs with, in its order."""
    config = process.config
    env = os.environ.copy()
    env['SUPERVISOR_ENABLED'] = '1'
    serverurl = config.serverurl
    if serverurl is None:
        serverurl = config.options.serverurl
    if serverurl:
        env['SUPERVISOR_SERVER_URL'] = serverurl
    env['SUPERVISOR_PROCESS_NAME'] = config.name
    if process.group:
        env['SUPERVISOR_GROUP_NAME'] = process.group.config.name
    if config.environment is not None:
        env.update(config.environment)
    return env


def execv_args(process):
    """``(filename, argv)`` as supervisor's spawn computes them (raises
    supervisor's ProcessException when it cannot)."""
    return process.get_execv_args()


def supervisor_groups(record):
    """The groups ``drop_privileges`` gives the user of ``record`` (a
    ``pwd`` entry), in its order."""
    return [record.pw_gid] + [
        group.gr_gid
        for group in grp.getgrall()
        if record.pw_name in group.gr_mem
    ]


def fork_exec_args(argv, executable, cwd, env, stdio, umask, errpipe):
    """The arguments of ``_posixsubprocess.fork_exec`` (Python 3.11 to
    3.13) for a vfork() + exec of ``executable`` with ``argv`` and ``env``
    (lists of bytes), the child in its own process group, ``stdio`` on 0,
    1, 2, every other fd closed, ``cwd`` (or None) and ``umask`` (-1:
    kept), signals ignored here still ignored there; ``errpipe``: (read,
    write) of the pipe on which the child reports a failure before its
    exec."""
    stdin, stdout, stderr = stdio
    return (
        argv,
        [executable],
        True,
        (errpipe[1],),
        cwd,
        env,
        stdin,
        -1,
        -1,
        stdout,
        -1,
        stderr,
        errpipe[0],
        errpipe[1],
        False,
        False,
        0,
        None,
        None,
        None,
        umask,
        None,
        True,
    )


# the configuration parser, the help, the loaded configs

# sha256 of inspect.getsource(...) in supervisor 4.2.5 and 4.3.0
PARSER_SOURCES = frozenset(
    {  # UnhosedConfigParser
        '18696657c34ced1ee971df494483100405be7bd586eefc489fba1a40d8d9ce76'
    }
)
HELP_SOURCES = frozenset(
    {  # Controller.do_help
        '471bf904104c849cb0e04f03b4dc7920179ca0f6e5e1f6cf70ba16a9b424d686'
    }
)
GROUP_CONFIG_SOURCES = frozenset(
    {  # Supervisor.diff_to_active
        '1f8bfc928cd1ec9c0379c5f876f9bcf6686eb7c5381f5c7aa81a4cadfc6f825a'
    }
)
ADD_GROUP_SOURCES = frozenset(
    {  # addProcessGroup
        '349aaf1ecfabbdbf26e137bf16fcd80bb315f75aee880f56bea4b2809d31ad37'
    }
)
READ_SOURCES = {  # what the incremental read relies on: {name: digests}
    'read_config': frozenset(
        {'004298e61d7603d6a6dc483ce7a4932c79a3a2a20d79eccb18007378819c7d71'}
    ),
    'process_groups_from_parser': frozenset(
        {
            '8ef6e16f4e7be16e2ee9fc5d48285e574639f153e98e0b92cabb6e0511b9032b',
            '08bd67ebd9bfcb04339f8715c8a49e88eb1bef2291aa9cc8e53a878927e1a5c2',
        }
    ),
    'processes_from_section': frozenset(
        {'92ef8ca7e1ddf0fc25507e077604fb23d9b1bd9dfca6d025c2eac15c1730f20a'}
    ),
    '_processes_from_section': frozenset(
        {'c17a5917d3bd8a4c2650bbc254fb48a6b9987cbd9375938563a2d410712b1618'}
    ),
    'logfile_name': frozenset(
        {'e9379b67dd785615943cac327f6abcc3b0fb40966e39fcba945dee42d6b412a8'}
    ),
    'existing_dirpath': frozenset(
        {'ee425f5142e42a816d29a14c321706313b3ad2a9017f4a7b1ddd25bc5c6e313a'}
    ),
}

# supervisor's own parser, as it was before any swap: what the plugin's
# own parsers (partitionparse, nodeconfig) always use, whatever
# supervisord's full reads use.
PLAIN_PARSER = supervisor.options.UnhosedConfigParser
# supervisor's own full read and log path check, before any swap
PLAIN_READ_CONFIG = supervisor.options.ServerOptions.read_config
PLAIN_LOGFILE_NAME = supervisor.options.logfile_name


@functools.cache
def source_digest(obj):
    """sha256 of ``obj``'s source, or None when it has none (computed
    once: ``inspect.getsource`` of a class parses its whole module)."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode('utf-8')).hexdigest()


def unknown(obj, known):
    """Why ``obj`` (supervisor code) is not one a use was checked
    against, or None when it is."""
    digest = source_digest(obj)
    if digest in known:
        return None
    return (
        f'{obj.__qualname__} is not a known one (checked: supervisor '
        f'{" and ".join(CHECKED_VERSIONS)}; sha256 {digest})'
    )


# the configuration parser


def parser_unsupported_reason():
    """Why ``LinearConfigParser`` cannot stand in for this supervisor's
    parser, or None when it can."""
    # supervisor's own read_config: the incremental read may already
    # stand in for it (supervisor-slapos-supervisord installs it first)
    if 'UnhosedConfigParser' not in PLAIN_READ_CONFIG.__code__.co_names:
        return 'ServerOptions.read_config does not use UnhosedConfigParser'
    reason = unknown(PLAIN_PARSER, PARSER_SOURCES)
    if reason is not None:
        return reason
    return configparser_reason(('_sections', '_defaults', '_proxies'))


def configparser_reason(names):
    """Why configparser's attributes ``names`` are not the dicts the plugin
    uses, or None when they are."""
    probe = configparser.RawConfigParser()
    if not all(isinstance(getattr(probe, name, None), dict) for name in names):
        return 'configparser keeps its sections otherwise'
    return None


def install_parser(parser_class, enable, disabled_reason):
    """Make supervisord's next full reads use ``parser_class`` (or the
    plain parser again when ``enable`` is false, ``disabled_reason``
    saying why). Harmless to call again; returns what it did, for
    supervisord's log."""
    reason = parser_unsupported_reason() if enable else disabled_reason
    linear = reason is None
    supervisor.options.UnhosedConfigParser = (
        parser_class if linear else PLAIN_PARSER
    )
    if linear:
        return 'linear configuration re-read installed'
    return f'plain configuration re-read ({reason})'


# the incremental read


def read_unsupported_reason():
    """Why the incremental read cannot stand in for this supervisor's
    ``read_config``, or None when it can."""
    reason = parser_unsupported_reason()
    if reason is not None:
        return reason
    used = dict(
        vars(supervisor.options.ServerOptions),
        read_config=PLAIN_READ_CONFIG,
        logfile_name=PLAIN_LOGFILE_NAME,
        existing_dirpath=supervisor.datatypes.existing_dirpath,
    )
    for name, known in READ_SOURCES.items():
        reason = unknown(used[name], known)
        if reason is not None:
            return reason
    return None


def install_read_config(read_config, enable, disabled_reason):
    """Make supervisord's next reads ``read_config(options, fp)`` (or
    supervisor's own again when ``enable`` is false, ``disabled_reason``
    saying why). Returns what it did, for supervisord's log."""
    reason = read_unsupported_reason() if enable else disabled_reason
    supervisor.options.ServerOptions.read_config = (
        read_config if reason is None else PLAIN_READ_CONFIG
    )
    if reason is None:
        return 'incremental configuration re-read installed'
    return f'full configuration re-read ({reason})'


@contextlib.contextmanager
def reading_with(parser_class, record_log_path):
    """Within the block, supervisor's ``read_config`` parses with
    ``parser_class`` and calls ``record_log_path(value, result)`` after
    each ``logfile_name(value)`` that returned."""

    def logfile_name(value):
        result = PLAIN_LOGFILE_NAME(value)
        record_log_path(value, result)
        return result

    kept = (
        supervisor.options.UnhosedConfigParser,
        supervisor.options.logfile_name,
    )
    supervisor.options.UnhosedConfigParser = parser_class
    supervisor.options.logfile_name = logfile_name
    try:
        yield
    finally:
        (
            supervisor.options.UnhosedConfigParser,
            supervisor.options.logfile_name,
        ) = kept


def check_log_path(path):
    """supervisor's parse-time check of a log file path (its directory
    exists: the same for every path of that directory); ValueError."""
    return PLAIN_LOGFILE_NAME(path)


# the help of supervisorctl


def topic_owners(plugins, topic):
    """The plugins that have help (or a command) named ``topic``."""
    return [
        plugin
        for plugin in plugins
        if hasattr(plugin, f'help_{topic}') or hasattr(plugin, f'do_{topic}')
    ]


def route_help(controller):
    """Route ``help <topic>`` to the plugins that know the topic; None,
    or why not (supervisorctl's own help stays).

    supervisorctl asks every plugin about every topic, and each plugin that
    lacks it prints ``*** No help on <topic>``: ``help slapos`` would start
    with the default plugin's, ``help status`` end with ours.
    """
    reason = unknown(supervisor.supervisorctl.Controller.do_help, HELP_SOURCES)
    if reason is not None:
        return f'help <topic> asks every plugin: {reason}'

    def do_help(arg):
        topic = arg.strip()
        if topic == 'help':
            return controller.help_help()
        plugins = controller.options.plugins
        if topic:
            plugins = topic_owners(plugins, topic)
            if not plugins:
                return controller.output(controller.nohelp % (topic,))
        for plugin in plugins:
            plugin.do_help(topic)

    controller.do_help = do_help
    return None


# the loaded configs


def group_configs_reason():
    """Why ``replace_group_configs`` leaves supervisord's configs alone on
    this supervisor, or None when it keeps them in step."""
    return unknown(
        supervisor.supervisord.Supervisor.diff_to_active, GROUP_CONFIG_SOURCES
    ) or unknown(
        supervisor.rpcinterface.SupervisorNamespaceRPCInterface.addProcessGroup,
        ADD_GROUP_SOURCES,
    )


def replace_group_configs(options, names, configs=()):
    """Keep supervisord's own view of the configuration in step with the
    groups the plugin loaded: the configs of groups ``names`` are replaced
    by ``configs``, the others stay. Nothing on a supervisor it was not
    checked against (``group_configs_reason``)."""
    if GROUP_CONFIGS_REASON is not None:
        return
    gone = set(names) | {c.name for c in configs}
    options.process_group_configs = [
        c for c in options.process_group_configs if c.name not in gone
    ] + list(configs)


GROUP_CONFIGS_REASON = group_configs_reason()


# a spawn that raised


def give_up_spawn(process, message):
    """Leave ``process``, whose spawn raised instead of failing
    supervisor's way (a ValueError for a NUL byte in a path: supervisor
    catches only OSError), as supervisor leaves a process it cannot spawn
    and will not retry: FATAL, ``message`` its spawnerr. Left STARTING with
    no pid, supervisor would call it RUNNING after ``startsecs``; BACKOFF
    would spawn it again in supervisord's loop, and raise there. Nothing
    when the spawn left it otherwise.

    Read in supervisor 4.2.5 and 4.3.0: ``record_spawnerr`` logs and keeps
    the message, ``change_state(BACKOFF)`` counts a try, ``give_up()``
    (from BACKOFF only) makes it FATAL and stops the retries."""
    if (
        SUPERVISOR_VERSION not in CHECKED_VERSIONS
        or process.pid
        or process.get_state() != ProcessStates.STARTING
    ):
        return
    process.record_spawnerr(message)
    process.change_state(ProcessStates.BACKOFF)
    process.give_up()


# slapgrid's offline pass: supervisor's own startAllProcesses

# sha256 of inspect.getsource(...) in supervisor 4.2.5 and 4.3.0
START_ALL_SOURCES = frozenset(
    {  # startAllProcesses
        '5535edb638dc467e56e0145be80581dc6d7e926ab07b24541110fb503a502dd6'
    }
)
ALL_PROCESSES_SOURCES = frozenset(
    {  # _getAllProcesses
        'e6e1a934b6536429b59b9307d15a4f33004b949ed380124c1bece4c1523b4d63'
    }
)
_START_ALL = (
    supervisor.rpcinterface.SupervisorNamespaceRPCInterface.startAllProcesses
)
# supervisord -> a function that names the groups to leave out
_START_ALL_SPARED = weakref.WeakKeyDictionary()


def start_all_reason():
    """Why ``spare_in_start_all`` leaves supervisor's startAllProcesses as
    it is on this supervisor, or None when it can spare groups."""
    rpc = supervisor.rpcinterface.SupervisorNamespaceRPCInterface
    return unknown(_START_ALL, START_ALL_SOURCES) or unknown(
        rpc._getAllProcesses, ALL_PROCESSES_SOURCES
    )


def _start_all_sparing(self, wait=True):
    """supervisor's own ``startAllProcesses``, run on the processes that
    its ``_getAllProcesses()`` lists but those of the groups the plugin
    spares (none: supervisor's, unchanged)."""
    spared = _START_ALL_SPARED.get(self.supervisord)
    names = set()
    if spared is not None:
        try:
            names = spared()
        except Exception as e:  # never into supervisord: spare nothing
            self.supervisord.options.logger.error(
                f'slapos: startAllProcesses spares nothing: {e!r}'
            )
    if not names:
        return _START_ALL(self, wait)
    self.supervisord.options.logger.info(
        f'slapos: startAllProcesses leaves out {", ".join(sorted(names))} '
        f'(destroys in progress)'
    )
    every = self._getAllProcesses
    self._getAllProcesses = lambda lexical=False: [
        (group, process)
        for group, process in every(lexical)
        if group.config.name not in names
    ]
    try:
        return _START_ALL(self, wait)
    finally:
        del self._getAllProcesses


functools.update_wrapper(_start_all_sparing, _START_ALL)  # its docstring


def spare_in_start_all(supervisord, spared):
    """Make supervisor's own ``startAllProcesses`` (slapgrid's offline pass
    calls it) in ``supervisord`` leave out the groups that ``spared()``
    (a set of names, asked at each call) names, and do what it does
    otherwise. None, or why not (then it stays supervisor's)."""
    if START_ALL_REASON is not None:
        return START_ALL_REASON
    _START_ALL_SPARED[supervisord] = spared
    rpc = supervisor.rpcinterface.SupervisorNamespaceRPCInterface
    rpc.startAllProcesses = _start_all_sparing
    return None


START_ALL_REASON = start_all_reason()


# supervisord's loop

# sha256 of inspect.getsource(Supervisor.runforever): 4.2.5, 4.3.0
LOOP_SOURCES = frozenset(
    {
        '2e39593dd377cb745b8eac187156dbf458f001f53513b9a39e4546b9b3048e52',
        '4f57d6e10b139a2a7f3b2c4dc7582360ef504ea851e9774066f557b833e14ab7',
    }
)
SOCKET_MAP_SOURCES = frozenset(
    {  # ServerOptions.get_socket_map
        '44c46b76568f7133a73385758e57d2e5fe22c486b00f877a25efa57fe81ff99e'
    }
)


def loop_unsupported_reason():
    """Why an entry of supervisord's socket map must not be used to make
    its loop turn (``offlinestart.LoopDriver``), or None when it can."""
    return unknown(
        supervisor.supervisord.Supervisor.runforever, LOOP_SOURCES
    ) or unknown(
        supervisor.options.ServerOptions.get_socket_map, SOCKET_MAP_SOURCES
    )


def socket_map(options):
    """The map of fds to dispatchers that supervisord's loop polls."""
    return options.get_socket_map()


def listener_commands(options):
    """``(command, directory)`` of every event listener process that
    supervisord's configuration declares."""
    return [
        (process.command, process.directory)
        for group in options.process_group_configs
        if isinstance(group, supervisor.options.EventListenerPoolConfig)
        for process in group.process_configs
    ]


# one partition's files, read as read_config reads them all


def sections_reason():
    """Why ``add_sections`` copies section by section on this Python, or
    None when it moves configparser's own sections."""
    return configparser_reason(('_sections', '_proxies'))


def add_sections(parser, single):
    """Add to ``parser`` the sections of ``single`` (one file parsed
    alone, with no [DEFAULT] and no section ``parser`` has), as reading
    that file into ``parser`` would, without parsing it again."""
    if SECTIONS_REASON is not None:
        for section in single.sections():
            parser.add_section(section)
            for option, value in single.items(section, raw=True):
                parser.set(section, option, value)
        return
    for section in single.sections():
        parser._sections[section] = single._sections[section]
        parser._proxies[section] = configparser.SectionProxy(parser, section)


def read_config_reason():
    """Why ``groups_from_parser`` may differ from this supervisor's full
    read, or None when it does what ``read_config`` does."""
    return unknown(PLAIN_READ_CONFIG, READ_SOURCES['read_config'])


def groups_from_parser(options, parser):
    """The group configs ``read_config`` makes from ``parser``:
    ``process_groups_from_parser``, then the ``[supervisord]
    environment`` under each process's own."""
    configs = options.process_groups_from_parser(parser)
    global_env = getattr(options.configroot.supervisord, 'environment', None)
    for group in configs:
        for process in group.process_configs:
            env = dict(global_env or {})
            env.update(process.environment or {})
            process.environment = env
    return configs


SECTIONS_REASON = sections_reason()
READ_CONFIG_REASON = read_config_reason()


# the loaded groups by name

# sha256 of inspect.getsource(...) in supervisor 4.2.5 and 4.3.0
ADD_PROCESS_GROUP_SOURCES = frozenset(
    {  # Supervisor.add_process_group
        '3607347c39fa18befc3095771565dff8111bd6d1ccfb56d5effc9060a8bc6674'
    }
)
REMOVE_PROCESS_GROUP_SOURCES = frozenset(
    {  # .remove_process_group
        'bc866deda535ab8b204dbc4dcb123dfa55830ab89cf6140b44e265b1eefe5a22'
    }
)


def group_events_reason():
    """Why the groups supervisord adds and removes cannot be followed by
    its events on this supervisor, or None when they can."""
    supervisord = supervisor.supervisord.Supervisor
    return unknown(
        supervisord.add_process_group, ADD_PROCESS_GROUP_SOURCES
    ) or unknown(
        supervisord.remove_process_group, REMOVE_PROCESS_GROUP_SOURCES
    )


def follow_groups(supervisord, added, removed):
    """Call ``added(name)`` or ``removed(name)`` whenever ``supervisord``
    adds or removes a group, until its reload. None, or why not (then the
    caller scans ``process_groups`` itself)."""
    if GROUP_EVENTS_REASON is not None:
        return GROUP_EVENTS_REASON
    supervisord_class = supervisor.supervisord.Supervisor
    for method in ('add_process_group', 'remove_process_group'):
        if getattr(type(supervisord), method, None) is not getattr(
            supervisord_class, method
        ):
            return (
                f'{type(supervisord).__name__}.{method} is not supervisor\'s'
            )

    def on_added(event):
        if event.group in supervisord.process_groups:
            added(event.group)

    def on_removed(event):
        if event.group not in supervisord.process_groups:
            removed(event.group)

    events.subscribe(events.ProcessGroupAddedEvent, on_added)
    events.subscribe(events.ProcessGroupRemovedEvent, on_removed)
    return None


GROUP_EVENTS_REASON = group_events_reason()
