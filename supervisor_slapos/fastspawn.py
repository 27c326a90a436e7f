"""Spawning a process at the fork/exec floor.

supervisord forks a copy of itself per process (tens of MB, thousands of
fds: most of an offline start's spawning time), then runs Python in the
child until its exec. ``floor_spawn(process)`` keeps everything of
supervisor's spawn (its state changes and events, pipes, log files,
``spawned:`` line, errors) and replaces only that fork: a vfork() whose
child, with no Python in it, puts the pipes on 0, 1, 2, closes the other
fds, joins a new process group, changes directory and umask, and execs
the command with supervisor's environment.

A process with a user to switch to execs util-linux's ``setpriv`` first,
which sets the groups, the gid and the uid as supervisor does, then execs
the command. Whatever it cannot do exactly as supervisor's child would
(``privilege_args``, ``internals``), and any failure of the child before its exec (which then
happens again in supervisor's own child, to report it in supervisor's
words), is left to supervisor's own spawn; the log says why, once per
reason.
"""
import contextlib
import os
import pwd
import shutil

from supervisor_slapos import internals

SETPRIV_PATHS = ('/usr/bin/setpriv', '/bin/setpriv')
_logged = set()


def find_setpriv():
    """The setpriv command's path, or None."""
    for path in SETPRIV_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which('setpriv')


_setpriv = find_setpriv()


def _may(st, uid, groups, bits):
    """Whether ``uid`` with ``groups`` gets ``bits`` (of rwx: 4, 2, 1) on
    a file of stat ``st``, by its mode (as the kernel checks, ACLs aside)."""
    if st.st_uid == uid:
        return st.st_mode >> 6 & bits == bits
    if st.st_gid in groups:
        return st.st_mode >> 3 & bits == bits
    return st.st_mode & bits == bits


def privilege_args(process, filename, argv, getuid=os.getuid):
    """``(args, reason)``: the setpriv arguments that switch to the
    process's user (``[]`` when none), or the reason it cannot be done
    exactly as supervisor's child does it."""
    user = process.config.uid
    if user is None:
        return [], None
    try:
        record = pwd.getpwuid(int(user))
    except ValueError:
        try:
            record = pwd.getpwnam(user)
        except KeyError:
            return None, f'no user {user!r}'
    except KeyError:
        return None, f'no uid {user!r}'
    if record.pw_uid == getuid():
        return [], None
    if getuid() != 0:
        return None, 'supervisord is not root'
    if _setpriv is None:
        return None, 'no setpriv command (util-linux) to switch users'
    if filename != argv[0]:
        return None, ('its command is found on PATH (setpriv would '
                      'search it again)')
    # The child changes directory before setpriv switches users:
    # supervisor's does it after; the same only if the user may enter it.
    groups = os.getgrouplist(record.pw_name, record.pw_gid)
    directory = process.config.directory
    try:
        if directory is not None and not _may(
                os.stat(directory), record.pw_uid, groups, 1):
            return None, f'user {record.pw_name} may not enter {directory}'
        if not _may(os.stat(filename), record.pw_uid, groups, 1):
            return None, f'user {record.pw_name} may not run {filename}'
    except OSError as e:
        return None, f'{e.filename}: {e.strerror}'
    return [_setpriv, f'--reuid={record.pw_uid}',
            f'--regid={record.pw_gid}',
            '--groups=' + ','.join(map(str, groups)), '--'], None


def _log_once(process, text, every=False):
    """Log why supervisor's own spawn is used: for ``process``, or for
    every process (``every``); each line once."""
    whom = 'every process' if every else f"'{process.config.name}'"
    line = f"slapos: supervisor's own spawn for {whom}: {text}"
    if line not in _logged:
        _logged.add(line)
        process.config.options.logger.info(line)


def _floor_fork(process):
    """``(pid, None)``: the pid of a vfork'd child that has exec'd the
    command; or ``(None, why)`` when it cannot be done as supervisor's
    child would (no child left behind). An OSError of the vfork itself
    is raised, as supervisor's fork raises it."""
    filename, argv = internals.execv_args(process)
    prefix, why = privilege_args(process, filename, argv)
    if why is not None:
        return None, why
    config = process.config
    args = [os.fsencode(a) for a in prefix + argv]
    executable = os.fsencode(prefix[0] if prefix else filename)
    env = [os.fsencode(k) + b'=' + os.fsencode(v)
           for k, v in internals.child_environment(process).items()]
    umask = -1 if config.umask is None else config.umask
    pid, error = internals.fork_exec(
        args, executable, config.directory, env,
        internals.child_pipes(process), umask)
    if error is None:
        return pid, None
    os.waitpid(pid, 0)
    return None, (f'its child failed before exec '
                  f'({error.decode(errors="replace")}); once more in '
                  f'supervisor\'s own child, to report it')


def _fork(process):
    """What replaces supervisor's fork() for ``process``: the floor's
    child, or supervisor's own fork when that cannot be done the same
    way (logged)."""
    try:
        pid, why = _floor_fork(process)
    except OSError:
        raise
    except Exception as e:  # a surprise: never into supervisord's loop
        pid, why = None, f'{type(e).__name__}: {e}'
    if why is None:
        return pid
    _log_once(process, why)
    return os.fork()


def start_process(core, process, namespec, wait=True):
    """supervisor's ``core.startProcess(namespec, wait)`` with the floor
    spawn for ``process`` (the process of ``namespec``)."""
    with floor_spawn(process):
        return core.startProcess(namespec, wait=wait)


@contextlib.contextmanager
def floor_spawn(process):
    """Within this block, ``process.spawn()`` (as supervisor's
    startProcess calls it) is supervisor's spawn with a vfork in place of
    its fork, or supervisor's own (logged) when it cannot be the same."""
    why = internals.spawn_unsupported()
    if why is not None:
        _log_once(process, why, every=True)
        yield
        return
    why = internals.process_unsupported(process)
    if why is not None:
        _log_once(process, why)
        yield
        return
    process.spawn = lambda: internals.fork_as(
        process, lambda: _fork(process))
    try:
        yield
    finally:
        del process.spawn
