"""The floor spawn: a process spawned as supervisor spawns it, without
supervisor's fork of itself.

supervisord forks a copy of itself per process (tens of MB, thousands of
fds: most of an offline start's spawning time), then runs Python in the
child until its exec. ``start_process`` runs supervisor's own
``startProcess`` (its state changes and events, pipes, log files,
``spawned:`` line, errors) with ``options.fork`` replaced, for that one
call, by a spawn that runs no Python in the child: the pipes on 0, 1, 2,
the other fds closed, a new process group, the directory and the umask,
then the command with supervisor's environment. On Python 3.11 and later
that is ``_posixsubprocess.fork_exec`` (a vfork). On 3.9 and 3.10, whose
fork_exec cannot make a process group without running Python in the
child, it is glibc's ``posix_spawn`` (a vfork too, called with ctypes:
``os.posix_spawn`` cannot name the signals glibc's leaves ignored), with
the directory and the umask set in supervisord around the call
(supervisord is single-threaded) and the descriptors supervisord
inherited closed by name.

A process with a user to switch to execs util-linux's ``setpriv``, which
sets the groups, the gid and the uid as supervisor's child does, then
execs the command. setpriv still holds root's capabilities at that exec
and uses ``execvp`` (``/bin/sh`` on ENOEXEC), so ``floor_of`` first
checks, as that user, what those would let pass where supervisor's child
fails: every directory on the way to the command, its interpreters and
``directory=``, the execute permission, a ``#!`` line or an ELF binary
of this machine. ``floor_of`` says up front whether the floor applies and
why not; a spawn that fails at the floor (its child failed before its
exec, or the spawn raised) is done again by supervisor's own fork, which
reports it in supervisor's words. The log says why, once per reason.
"""

import _posixsubprocess
import contextlib
import ctypes
import functools
import os
import pwd
import shutil
import struct
import sys
from dataclasses import dataclass

from supervisor_slapos import internals

SETPRIV_PATHS = ('/usr/bin/setpriv', '/bin/setpriv')
BINPRM_BUF_SIZE = 256  # what Linux reads of a #! line
MAX_INTERPRETERS = 4  # #! levels Linux follows
PT_INTERP = 3
_logged = set()


def find_setpriv():
    """The setpriv command's path, or None."""
    for path in SETPRIV_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which('setpriv')


_setpriv = find_setpriv()


@dataclass(frozen=True)
class Floor:
    """What the floor execs for one process, and how."""

    executable: str
    argv: list
    env: dict
    cwd: object  # a path, or None: supervisord's own
    umask: int  # -1: supervisord's own


def start_process(core, process, namespec, wait=True):
    """supervisor's ``core.startProcess(namespec, wait)`` (``process``
    is the process of ``namespec``) with the floor's spawn in place of
    its fork, or its own fork when the floor does not apply (logged)."""
    floor, why = floor_of(process)
    if why is not None:
        _log_once(process, why)
    if floor is None:
        return core.startProcess(namespec, wait=wait)
    options = process.config.options
    options.fork = lambda: _fork(process, floor)
    try:
        return core.startProcess(namespec, wait=wait)
    finally:
        del options.fork


def floor_of(process):
    """``(floor, None)`` when the floor spawns ``process`` with exactly
    supervisor's outcome; ``(None, why)`` when it cannot (a sentence
    starting with whom it is about); ``(None, None)`` when supervisor's
    spawn ends before its fork anyway."""
    why = internals.spawn_unsupported()
    if why is not None:
        return None, f'every process: {why}'
    name = f"'{process.config.name}'"
    why = internals.process_unsupported(process)
    if why is not None:
        return None, f'{name}: {why}'
    try:
        filename, argv = internals.execv_args(process)
    except Exception:  # ProcessException; ValueError for a NUL byte
        return None, None  # supervisor's spawn fails so before its fork
    try:
        floor, why = _floor(process, filename, argv)
    except Exception as e:  # a surprise: never into supervisord's loop
        floor, why = None, f'{type(e).__name__}: {e}'
    return floor, (None if why is None else f'{name}: {why}')


def _floor(process, filename, argv):
    config = process.config
    env = internals.child_environment(process)
    why = _bad_environment(env) or _nul_in(
        [filename, *argv, config.directory or '']
    )
    if why is not None:
        return None, why
    prefix, why = _user_switch(config, filename, argv)
    if why is not None:
        return None, why
    umask = -1 if config.umask is None else config.umask
    return Floor(
        prefix[0] if prefix else filename,
        prefix + argv,
        env,
        config.directory,
        umask,
    ), None


def _bad_environment(env):
    """Why ``os.execve`` in supervisor's child refuses ``env``, or None."""
    for key in env:
        if not key or '=' in key[1:]:
            return (
                f'environment variable name {key!r} (supervisor\'s '
                f'child: "illegal environment variable name")'
            )
    return _nul_in(list(env) + list(env.values()))


def _nul_in(texts):
    if any('\0' in text for text in texts):
        return 'a NUL byte in its command, directory or environment'
    return None


def _user_switch(config, filename, argv):
    """``(args, None)``: the setpriv arguments that make the command run
    as supervisor's child would after ``drop_privileges`` (``[]``: no
    switch); or ``(None, why)``."""
    user = config.uid
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
    if record.pw_uid == os.getuid():
        return [], None
    if os.getuid() != 0:
        return None, 'supervisord is not root'
    if _setpriv is None:
        return None, 'no setpriv command (util-linux) to switch users'
    if filename != argv[0]:
        return None, (
            'its command is found on PATH (setpriv would search it again)'
        )
    groups = internals.supervisor_groups(record)
    if len(groups) > os.sysconf('SC_NGROUPS_MAX'):
        return None, f'user {record.pw_name} has too many groups'
    why = _refused_to(record, groups, filename, config.directory)
    if why is not None:
        return None, why
    return [
        _setpriv,
        f'--reuid={record.pw_uid}',
        f'--regid={record.pw_gid}',
        '--groups=' + ','.join(map(str, groups)),
        '--',
    ], None


def _refused_to(record, groups, filename, directory):
    """Why supervisor's child, as ``record`` with ``groups``, fails to
    change to ``directory`` or to exec ``filename`` (or would exec it
    otherwise than setpriv does), or None."""
    here = directory or os.getcwd()
    chain, why = _exec_chain(os.path.join(here, filename), here)
    if why is not None:
        return why
    with _as_user(record.pw_uid, record.pw_gid, groups):
        if directory is not None and not os.access(directory, os.X_OK):
            return f'user {record.pw_name} may not enter {directory}'
        for path in chain:
            if not os.access(path, os.X_OK):
                return f'user {record.pw_name} may not run {path}'
    return None


@contextlib.contextmanager
def _as_user(uid, gid, groups):
    """Within the block, supervisord's real and effective ids and its
    groups are the user's (the saved ids stay root's), so that
    ``os.access`` answers as the kernel answers the user's own exec;
    everything restored after."""
    saved = os.getresuid(), os.getresgid(), os.getgroups()
    try:
        os.setgroups(groups)
        os.setresgid(gid, gid, -1)
        os.setresuid(uid, uid, -1)
        yield
    finally:
        os.setresuid(*saved[0])
        os.setresgid(*saved[1])
        os.setgroups(saved[2])


def _exec_chain(path, here, depth=0):
    """``(files, None)``: ``path`` and the interpreters Linux opens to
    exec it (``#!`` lines, an ELF's program interpreter), each a binary
    Linux runs here; or ``(None, why)`` (the exec would fail, or go
    otherwise through setpriv's execvp)."""
    try:
        if not os.path.isfile(path):  # (not a FIFO's open, which waits)
            return None, f'{path} is not a regular file'
        with open(path, 'rb') as f:
            head = f.read(4096)
            if head.startswith(b'\x7fELF'):
                return _elf_chain(path, f, head)
    except OSError as e:
        return None, f'{e.filename or path}: {e.strerror}'
    if not head.startswith(b'#!'):
        return None, (
            f'{path} is neither a #! script nor a binary '
            f'(supervisor\'s child fails with ENOEXEC)'
        )
    line, newline, _ = head[2:BINPRM_BUF_SIZE].partition(b'\n')
    interpreter = line.strip(b' \t').split(b' ')[0].split(b'\t')[0]
    if not newline or not interpreter or depth == MAX_INTERPRETERS:
        return None, f'{path}: a #! line Linux does not run as such'
    chain, why = _exec_chain(
        os.path.join(here, os.fsdecode(interpreter)), here, depth + 1
    )
    return (None, why) if why else ([path] + chain, None)


def _elf_chain(path, f, head):
    """``_exec_chain`` of the ELF file ``f`` (``head``: its start)."""
    if head[4:6] != _OWN_ELF[4:6] or head[18:20] != _OWN_ELF[18:20]:
        return None, f'{path} is an ELF binary for another machine'
    wide = head[4] == 2
    order = '<' if head[5] == 1 else '>'
    phoff, entsize, count = (
        struct.unpack_from(f'{order}Q', head, 32)
        + struct.unpack_from(f'{order}HH', head, 54)
        if wide
        else struct.unpack_from(f'{order}I', head, 28)
        + struct.unpack_from(f'{order}HH', head, 42)
    )
    for index in range(count):
        f.seek(phoff + index * entsize)
        entry = f.read(entsize)
        if struct.unpack_from(f'{order}I', entry)[0] != PT_INTERP:
            continue
        offset, size = (
            struct.unpack_from(f'{order}Q', entry, 8)
            + struct.unpack_from(f'{order}Q', entry, 32)
            if wide
            else struct.unpack_from(f'{order}I', entry, 4)
            + struct.unpack_from(f'{order}I', entry, 16)
        )
        f.seek(offset)
        loader = os.fsdecode(f.read(size).rstrip(b'\0'))
        if not os.path.isfile(loader):
            return None, f'{path}: no program interpreter {loader}'
        return [path, loader], None
    return [path], None


def _own_elf():
    with open('/proc/self/exe', 'rb') as f:
        return f.read(20)


_OWN_ELF = _own_elf()


def _log_once(process, why):
    """Log why supervisor's own spawn is used; each line once."""
    line = f"slapos: supervisor's own spawn for {why}"
    if line not in _logged:
        _logged.add(line)
        process.config.options.logger.info(line)


def _fork(process, floor):
    """What stands for supervisor's ``fork()``: the pid of the floor's
    child, which has exec'd; or, when the floor failed (logged, nothing
    of it left), supervisor's own fork (which raises as it raises)."""
    try:
        pid, error = SPAWN(
            floor,
            internals.child_pipes(process),
            process.config.options.minfds,
        )
    except Exception as e:
        pid, error = None, f'{type(e).__name__}: {e}'
    if pid is not None:
        return pid
    _log_once(
        process,
        f"'{process.config.name}': the floor's spawn failed "
        f"({error}); supervisor's own fork does it again, "
        f"to report it",
    )
    return os.fork()


def _fork_exec(floor, stdio, minfds):
    """Python 3.11+: ``(pid, None)``, or ``(None, error)`` when the child
    failed before its exec (then reaped). Raises what fork_exec raises;
    every descriptor it opened is closed either way."""
    errpipe = os.pipe()
    try:
        try:
            pid = _posixsubprocess.fork_exec(
                *internals.fork_exec_args(
                    [os.fsencode(a) for a in floor.argv],
                    os.fsencode(floor.executable),
                    floor.cwd,
                    [
                        os.fsencode(k) + b'=' + os.fsencode(v)
                        for k, v in floor.env.items()
                    ],
                    stdio,
                    floor.umask,
                    errpipe,
                )
            )
        finally:
            os.close(errpipe[1])
        error = os.read(errpipe[0], 50000)
    finally:
        os.close(errpipe[0])
    if not error:
        return pid, None
    os.waitpid(pid, 0)
    return None, error.decode(errors='replace')


@functools.cache
def inherited_fds():
    """The descriptors (3 and up) supervisord inherited without
    close-on-exec, read once: every one supervisord opens itself is
    close-on-exec (Python's default)."""
    inherited = []
    for fd in sorted(map(int, os.listdir('/proc/self/fd'))):
        with contextlib.suppress(OSError):  # the listing's own
            if fd > 2 and os.get_inheritable(fd):
                inherited.append(fd)
    return tuple(inherited)


def _posix_spawn(floor, stdio, minfds):
    """Python 3.9 and 3.10: ``(pid, None)``; raises OSError when glibc's
    posix_spawn fails (it reaps a child that failed). supervisor's child
    closes the fds 3 to ``minfds``; supervisord's directory and umask are
    its own again afterwards."""
    closes = [fd for fd in inherited_fds() if fd < minfds and fd not in stdio]
    ignored = _ignored_signals()
    here = os.open('.', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    umask = None
    try:
        if floor.cwd is not None:
            os.chdir(floor.cwd)
        if floor.umask != -1:
            umask = os.umask(floor.umask)
        return glibc_posix_spawn(
            os.fsencode(floor.executable),
            [os.fsencode(a) for a in floor.argv],
            [
                os.fsencode(k) + b'=' + os.fsencode(v)
                for k, v in floor.env.items()
            ],
            list(zip(stdio, range(3))),
            closes,
            [
                signal
                for signal in internals.GLIBC_SIGNALS_TO_DEFAULT
                if not ignored >> (signal - 1) & 1
            ],
        ), None
    finally:
        if umask is not None:
            os.umask(umask)
        os.fchdir(here)
        os.close(here)


def _checked(error):
    if error:
        raise OSError(error, os.strerror(error))


def _ignored_signals():
    """The signals supervisord ignores (a bit per signal), as the kernel
    says: ``signal.getsignal`` does not know glibc's own."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('SigIgn:'):
                return int(line.split()[1], 16)
    raise OSError('no SigIgn in /proc/self/status')


def glibc_posix_spawn(path, argv, env, dup2s, closes, to_default):
    """glibc's ``posix_spawn`` of ``path`` (bytes) with ``argv`` and
    ``env`` (lists of bytes), the ``dup2s`` ((fd, target) pairs) and
    ``closes`` (fds), the child in its own process group, the signals
    ``to_default`` to SIG_DFL; returns the pid."""
    libc = _libc()
    actions = ctypes.create_string_buffer(1024)  # > any glibc's size
    attr = ctypes.create_string_buffer(1024)
    _checked(libc.posix_spawn_file_actions_init(actions))
    try:
        _checked(libc.posix_spawnattr_init(attr))
        try:
            for fd, target in dup2s:
                _checked(
                    libc.posix_spawn_file_actions_adddup2(actions, fd, target)
                )
            for fd in closes:
                _checked(libc.posix_spawn_file_actions_addclose(actions, fd))
            _checked(
                libc.posix_spawnattr_setflags(
                    attr,
                    ctypes.c_short(
                        internals.POSIX_SPAWN_SETPGROUP
                        | internals.POSIX_SPAWN_SETSIGDEF
                    ),
                )
            )
            _checked(libc.posix_spawnattr_setpgroup(attr, 0))
            _checked(
                libc.posix_spawnattr_setsigdefault(attr, _sigset(to_default))
            )
            pid = ctypes.c_int()
            _checked(
                libc.posix_spawn(
                    ctypes.byref(pid),
                    path,
                    actions,
                    attr,
                    (ctypes.c_char_p * (len(argv) + 1))(*argv, None),
                    (ctypes.c_char_p * (len(env) + 1))(*env, None),
                )
            )
            return pid.value
        finally:
            libc.posix_spawnattr_destroy(attr)
    finally:
        libc.posix_spawn_file_actions_destroy(actions)


def _sigset(signals):
    """A glibc ``sigset_t`` (1024 bits, in unsigned longs) of
    ``signals``, made bit by bit: ``sigaddset`` refuses glibc's own."""
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    words = [0] * (1024 // bits)
    for signal in signals:
        words[(signal - 1) // bits] |= 1 << ((signal - 1) % bits)
    return ctypes.create_string_buffer(struct.pack(f'{len(words)}L', *words))


@functools.cache
def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.posix_spawnattr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
    return libc


SPAWN = (
    _fork_exec
    if sys.version_info[:2] in internals.FORK_EXEC_PYTHONS
    else _posix_spawn
)
