"""Every use the plugin makes of supervisor's (and CPython's) internals,
each with the versions it was read against.

Supervisor's public surface (its RPC interface, its config parser) does
not cover what the plugin needs to spawn a process at the fork/exec
floor (``fastspawn``). What it leans on instead is listed here, once, and
checked against the versions named in ``SPAWN_CHECKED``: on any other
version the plugin uses supervisor's own spawn and logs why.

Read in supervisor 4.2.5 and 4.3.0 (``supervisor/process.py`` is the same
file in both):

- ``Subprocess.spawn()`` makes the state change to STARTING (and its
  event), turns the command into ``(filename, argv)`` with
  ``get_execv_args()`` (which also checks, in supervisord, that the file
  exists and is executable), makes the pipes and log dispatchers with
  ``config.make_dispatchers`` into ``process.pipes``, then calls
  ``config.options.fork()`` with no argument. On a non-zero pid it takes
  the parent's path (closes the child's pipe ends, logs ``spawned:``,
  records the pid); on 0 it runs its own child code; on ``OSError`` it
  logs and backs off. ``fork_as`` replaces only that ``fork()`` call, for
  one process, so that everything else stays supervisor's.
- The child (``_spawn_as_child``): ``setpgrp()``; the child ends of the
  pipes on 0, 1 and 2 (stdout's on 2 with ``redirect_stderr``); fds 3 to
  ``minfds`` closed (all others are close-on-exec in supervisord); then
  ``options.drop_privileges(config.uid)``; the environment of
  ``child_environment`` below; ``chdir(config.directory)``;
  ``umask(config.umask)``; ``execve(filename, argv, env)``. Any failure
  writes ``supervisor: ...`` on fd 2 and exits 127. Signals ignored in
  supervisord (SIGPIPE, SIGXFSZ: CPython ignores them) stay ignored
  across its exec.
- ``ProcessConfig`` fields read by ``fastspawn``: ``name``, ``uid`` (an
  int: ``processes_from_section`` turns ``user=`` into a uid),
  ``directory``, ``umask`` (None when unset), ``redirect_stderr``,
  ``environment``, ``serverurl``; ``options.logger``.
- ``drop_privileges(user)``: ``user`` a name or a uid; nothing is done
  when it is already supervisord's uid; a non-root supervisord fails;
  else the groups are the user's primary gid plus every group that lists
  the user's name as a member, then ``setgid``, then ``setuid``.

Read in CPython 3.11, 3.12 and 3.13 (``Lib/subprocess.py``):
``_posixsubprocess.fork_exec``'s 23 positional arguments, as ``Popen``
passes them (``FORK_EXEC_PYTHONS``); the error pipe's write end must be
among the fds kept (it stays close-on-exec). It uses vfork() when no uid,
gid or groups change and no preexec function is asked.
"""
import os
import sys

import _posixsubprocess
from supervisor.options import VERSION as SUPERVISOR_VERSION
from supervisor.process import Subprocess

SPAWN_CHECKED = ('4.2.5', '4.3.0')
FORK_EXEC_PYTHONS = ((3, 11), (3, 12), (3, 13))


def spawn_unsupported(version=None, python=None):
    """Why ``fork_as`` and ``fork_exec`` must not be used here (a
    sentence), or None when the internals they rely on are the ones read
    above."""
    version = SUPERVISOR_VERSION if version is None else version
    python = sys.version_info[:2] if python is None else python
    if version not in SPAWN_CHECKED:
        return (f'supervisor {version} is not one the floor spawn was '
                f'checked against ({", ".join(SPAWN_CHECKED)})')
    if python not in FORK_EXEC_PYTHONS:
        return (f'Python {python[0]}.{python[1]}: its fork_exec was not '
                f'checked')
    return None


def process_unsupported(process):
    """Why ``fork_as`` must not be used for ``process``, or None."""
    if type(process) is not Subprocess:
        return f'a {type(process).__name__}, not a plain Subprocess'
    if 'spawn' in vars(process) or 'fork' in vars(process.config.options):
        return 'its spawn or fork is already replaced'
    return None


def fork_as(process, fork):
    """Run supervisor's own ``Subprocess.spawn(process)``, with ``fork`` (no
    argument, returns a pid, never 0 unless it really forked) in place of
    its ``options.fork()``. Returns what spawn returns."""
    options = process.config.options
    options.fork = fork
    try:
        return Subprocess.spawn(process)
    finally:
        del options.fork


def child_pipes(process):
    """The child's (stdin, stdout, stderr) fds of a process being spawned,
    as supervisor's child puts them on 0, 1, 2."""
    pipes = process.pipes
    stdout = pipes['child_stdout']
    stderr = stdout if process.config.redirect_stderr \
        else pipes['child_stderr']
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
    """``(filename, argv)`` as supervisor's spawn computed them a moment
    before (raises supervisor's ProcessException when it cannot)."""
    return process.get_execv_args()


def fork_exec(argv, executable, cwd, env, stdio, umask):
    """vfork() + exec of ``executable`` with ``argv`` and ``env`` (lists
    of bytes), the child in its own process group, ``stdio`` on 0, 1, 2,
    every other fd closed, ``cwd`` (or None) and ``umask`` (-1: kept),
    signals ignored here still ignored there. Returns ``(pid, error)``:
    ``error`` is None, or the child's report (bytes) of what failed
    before its exec; that child has then exited (not reaped)."""
    stdin, stdout, stderr = stdio
    errpipe_read, errpipe_write = os.pipe()
    try:
        pid = _posixsubprocess.fork_exec(
            argv, [executable], True, (errpipe_write,), cwd, env,
            stdin, -1, -1, stdout, -1, stderr,
            errpipe_read, errpipe_write,
            False, False, 0, -1, None, -1, umask, None, True)
    finally:
        os.close(errpipe_write)
    try:
        error = os.read(errpipe_read, 50000)
    finally:
        os.close(errpipe_read)
    return pid, (error or None)
