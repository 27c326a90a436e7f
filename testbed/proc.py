"""What the tests and the benchmarks read from ``/proc``, and the one way to
kill a process tree that they share."""

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from testbed.polling import wait_until


@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/PID/stat`` that are used here."""

    state: str
    ppid: int
    pgrp: int
    session: int
    minor_faults: int  # minflt: counted across execs
    start_ticks: int  # when the process was forked, clock ticks since boot


def stat(pid):
    """``pid``'s :class:`Stat`; OSError when there is no such process."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        text = f.read()
    # the command may hold spaces and parentheses: split after the last )
    fields = text[text.rindex(b')') + 2 :].split()
    return Stat(
        fields[0].decode(),
        int(fields[1]),
        int(fields[2]),
        int(fields[3]),
        int(fields[7]),
        int(fields[19]),
    )


def processes():
    """(pid, Stat) of every process that can be read now."""
    for entry in os.scandir('/proc'):
        if entry.name.isdigit():
            try:
                yield int(entry.name), stat(entry.name)
            except OSError:  # gone meanwhile
                continue


def children_of(parent):
    """The set of pids of ``parent``'s children, read from its threads'
    ``children`` files (no walk of every process: the benchmarks poll
    this beside thousands of processes); empty when ``parent`` is gone."""
    children = set()
    try:
        for task in os.scandir(f'/proc/{parent}/task'):
            with open(f'{task.path}/children') as f:
                children.update(int(child) for child in f.read().split())
    except OSError:  # gone meanwhile
        pass
    return children


def session_members(sid):
    """Pids of the processes of session ``sid``."""
    return [pid for pid, st in processes() if st.session == sid]


def is_alive(pid):
    """Whether ``pid`` is a process that has not exited (not a zombie)."""
    try:
        return stat(pid).state not in ('Z', 'X')
    except OSError:
        return False


def cmdline(pid):
    """``pid``'s command line as /proc gives it: each argument ended by a
    NUL byte; OSError when there is no such process."""
    return Path(f'/proc/{pid}/cmdline').read_bytes()


def environ(pid):
    """``pid``'s environment, {bytes: bytes}; OSError when there is no
    such process."""
    text = Path(f'/proc/{pid}/environ').read_bytes()
    return dict(
        item.split(b'=', 1) for item in text.split(b'\0') if b'=' in item
    )


def has_execed(pid):
    """Whether a child of supervisord runs its own command yet (a SIGTERM
    sent between fork and exec is lost)."""
    try:
        return b'supervisord' not in cmdline(pid)
    except OSError:
        return False


def handles_sigterm(pid):
    """Whether ``pid`` ignores or catches SIGTERM yet: a shell that traps it
    is only known to have set its trap once this is true (a TERM sent
    before that kills it at once)."""
    bit = 1 << (signal.SIGTERM - 1)
    try:
        with open(f'/proc/{pid}/status') as f:
            masks = [
                int(line.split()[1], 16)
                for line in f
                if line.startswith(('SigIgn:', 'SigCgt:'))
            ]
    except OSError:
        return False
    return any(mask & bit for mask in masks)


def process_start_time(pid):
    """When ``pid`` was forked, in seconds since boot."""
    return stat(pid).start_ticks / os.sysconf('SC_CLK_TCK')


def rss_kib(pid):
    """``pid``'s resident memory, in KiB."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise ValueError(f'no VmRSS for {pid}')


def kill(pid):
    """SIGKILL ``pid``, if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def kill_process_group(pid):
    """SIGKILL ``pid``'s process group (supervisord puts each child in its
    own), or ``pid`` alone when it leads none."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        kill(pid)


def kill_tree(pid, timeout=30):
    """SIGKILL supervisord ``pid`` and everything it started, whatever
    state it is in (alive, frozen, already dead); wait until they are all
    gone (``pid`` itself may stay a zombie until its parent waits).

    supervisord is frozen first, so that it cannot respawn a child
    (autorestart) between the kill of its children and its own. What it
    started is found both as its children (one that left its session)
    and as the members of the session it leads, if any (one forked but
    not exec'd yet, an orphan whose supervisord already died).
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGSTOP)
    killed = (children_of(pid) | set(session_members(pid))) - {pid}
    for child in sorted(killed):
        kill_process_group(child)
    kill(pid)
    killed.add(pid)
    wait_until(
        lambda: not any(map(is_alive, killed)),
        timeout,
        what="the node's processes dead",
    )


def open_fds(pid):
    """``pid``'s open descriptors: {fd: what it points to}."""
    fds = {}
    for entry in os.scandir(f'/proc/{pid}/fd'):
        with contextlib.suppress(OSError):  # closed meanwhile
            fds[int(entry.name)] = os.readlink(entry.path)
    return fds
