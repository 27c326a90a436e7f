"""Open files: room for every process of the node.

supervisord holds up to three descriptors per process (the pipes to its
stdin, stdout and stderr) besides its own, and a spawn that finds no free
one fails (``too many open files to spawn``, then FATAL). cron starts its
jobs, and so slapgrid's supervisord, with a soft limit of 1024 open files
(systemd's default, ``LimitNOFILE=1024:524288``), and slapgrid's
``supervisord.conf`` sets no ``minfds``: a node of a few hundred
partitions cannot run its services.

So when the plugin loads, before supervisord spawns anything, it raises
its soft limit to ``WANTED`` open files, or to the hard limit when that is
lower (any user may raise its soft limit up to the hard one). That is what
supervisord does itself at its start for ``minfds = WANTED``, and, as
then, the processes it starts inherit the limit. ``minfds`` itself stays:
supervisor's child closes every descriptor from 3 to ``minfds`` before its
exec, one system call each, at every spawn; every other descriptor of
supervisord is close-on-exec (Python's own), so the child gets none of
them either way. ``WANTED`` is not the hard limit itself (524288 under
systemd) because programs that close every possible descriptor before an
exec, or size a table by the soft limit, would pay for it in every
service.
"""

import resource

# about 21000 processes; 64 times cron's limit
WANTED = 65536
# what supervisord holds per process, at most (the one estimate: the
# node check and the spawn errors' advice count with it too)
PER_PROCESS = 3


def raised_soft_limit(soft, hard, wanted=WANTED):
    """The soft limit of open files to set, or None to leave ``soft`` as
    it is: ``wanted``, or ``hard`` when lower; never lower than ``soft``
    (an unlimited one stays)."""
    infinity = resource.RLIM_INFINITY
    if soft == infinity:
        return None
    target = wanted if hard == infinity else min(hard, wanted)
    return target if target > soft else None


def _limit_text(value):
    return 'unlimited' if value == resource.RLIM_INFINITY else str(value)


def raise_open_files(
    getrlimit=resource.getrlimit, setrlimit=resource.setrlimit
):
    """Raise this process's soft limit of open files as
    :func:`raised_soft_limit` says; returns ``(ok, sentence)`` for
    supervisord's log (``ok`` false: a raise was refused)."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    limits = f'hard limit {_limit_text(hard)}'
    new = raised_soft_limit(soft, hard)
    if new is None:
        return True, (
            f'open files: soft limit {_limit_text(soft)} '
            f'({limits}){_room(soft)}'
        )
    try:
        setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError) as e:
        return False, (
            f'open files: soft limit {soft} ({limits}) could '
            f'not be raised to {new}: {e}{_room(soft)}'
        )
    return True, (
        f'open files: soft limit raised from {soft} to {new} '
        f'({limits}){_room(new)}'
    )


def _room(soft):
    if soft == resource.RLIM_INFINITY:
        return ''
    return f'; room for about {soft // PER_PROCESS} processes'
