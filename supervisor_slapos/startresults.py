"""What a start of processes did, in words: the reason a process could not
be started, and one line for a whole offline start (and ``shorten``, any
list on one line).

Pure but for ``resource.getrlimit`` (the limits of the process it runs in:
supervisord's, when the plugin calls it).
"""

import resource

from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.descriptors import PER_PROCESS

# How many names a summary line shows before it counts the rest.
NAMES_SHOWN = 5
# supervisor's spawn errors for a lack of descriptors: its own
# ("too many open files to spawn 'x'", when making the pipes fails) and a
# fork that failed for it ("unknown error during fork for 'x': EMFILE").
DESCRIPTOR_ERRORS = ('too many open files', 'EMFILE')


def descriptor_limit():
    """What supervisord's open-file limit is, and what to do about it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = 'unlimited' if hard == resource.RLIM_INFINITY else hard
    return (
        f"supervisord's open-file limit (RLIMIT_NOFILE) is soft {soft}, "
        f'hard {hard}, and it holds about {PER_PROCESS} per process: '
        f'raise it where '
        f'supervisord is started (ulimit -n, prlimit --nofile, '
        f'LimitNOFILE=) or with minfds in [supervisord], then restart '
        f'supervisord'
    )


def failure_text(error, spawnerr=None):
    """The description of a process that could not be started, for its
    fault ``error`` (an RPCError): for a SPAWN_ERROR (whose text names only
    the process) the process's ``spawnerr`` (supervisor's reason) too and,
    when that is a lack of descriptors, the limit and what to do."""
    text = error.text
    if error.code != SupervisorFaults.SPAWN_ERROR or not spawnerr:
        return text
    text = f'{text} ({spawnerr}'
    if any(words in spawnerr for words in DESCRIPTOR_ERRORS):
        text += f': {descriptor_limit()}'
    return text + ')'


def shorten(items, what='', separator=', '):
    """``items`` on one line: the first few, and how many more (``what``,
    e.g. ``' partitions'``, after the count). The one way the plugin and
    the listener list names, addresses and errors in a line."""
    shown = separator.join(items[:NAMES_SHOWN])
    if len(items) > NAMES_SHOWN:
        shown += f' and {len(items) - NAMES_SHOWN} more{what}'
    return shown


def summary(results, owner):
    """One line for the results of a start of processes (``{name, group,
    status, description}`` each), naming the partitions whose processes
    it started (``owner(group)``: a group's partition) and the processes
    that failed (each failure's description is the caller's to show);
    None when it tried none."""
    if not results:
        return None
    started, failed = set(), []
    for result in results:
        namespec = f'{result["group"]}:{result["name"]}'
        if result['status'] == SupervisorFaults.SUCCESS:
            started.add(owner(result['group']) or result['group'])
        else:
            failed.append(namespec)
    count = len(results) - len(failed)
    line = f'started {count} processes'
    if started:
        line += (
            f' of {len(started)} partitions: '
            f'{shorten(sorted(started), " partitions")}'
        )
    if failed:
        line += f'; {len(failed)} failed: {shorten(sorted(failed), "")}'
    return line
