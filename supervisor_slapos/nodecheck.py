"""``supervisorctl slapos check``: the node's health, one line per point.

Each point is judged here by a pure function of what supervisorctl
gathered (the plugin version supervisord loaded, its processes, its
descriptor limit, the setup's record, the partitions' info): a
:class:`Line`, ``ok``, ``warn`` or ``FAIL`` with what to do. Only
:func:`open_files_limit`, :func:`probe_writable` and :func:`boot_command`
look at the host: the check runs on supervisord's host, as supervisord's
user (its socket is that user's).
"""

import errno
import os
import shlex
import tempfile
import xmlrpc.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.descriptors import PER_PROCESS
from supervisor_slapos.files import TMP_PREFIX, TMP_SUFFIX

OK, WARN, FAIL = 'ok', 'warn', 'FAIL'
# the check's exit status: the worst line's
EXIT_STATUS = {OK: 0, WARN: 1, FAIL: 2}
# supervisord's own descriptors (its log, the socket, clients), beside
# PER_PROCESS for each process
SLACK = 64
# below this much room beyond what the processes need, a warning: a few
# more partitions and the node cannot hold them
ROOM = 1.25
LISTENER = 'slapos'  # [eventlistener:slapos]: group and process name
# what getPluginVersion's absence means: a plugin older than the check
OLDER = None


class PluginNotLoaded(Exception):
    """supervisord has no ``slapos`` namespace."""


def loaded_version(slapos):
    """The supervisor_slapos version supervisord loaded, asked through its
    ``slapos`` namespace: ``OLDER`` for one before getPluginVersion;
    PluginNotLoaded without the plugin; any other fault is raised."""
    try:
        return slapos.getPluginVersion()
    except xmlrpc.client.Fault as e:
        if e.faultCode != SupervisorFaults.UNKNOWN_METHOD:
            raise
    try:
        slapos.getAPIVersion()
    except xmlrpc.client.Fault as e:
        if e.faultCode != SupervisorFaults.UNKNOWN_METHOD:
            raise
        raise PluginNotLoaded from e
    return OLDER


@dataclass(frozen=True)
class Line:
    level: str
    point: str
    text: str

    def __str__(self):
        return f'{self.level:<5} {self.point:<12} {self.text}'


LOCAL_HOSTS = ('localhost', '127.0.0.1', '::1')


def is_local(serverurl):
    """Whether supervisord at ``serverurl`` runs on this host (a unix
    socket, or the loopback): only then are its /proc entry, state_dir
    and boot entry this host's."""
    return (
        serverurl.startswith('unix://')
        or urlsplit(serverurl).hostname in LOCAL_HOSTS
    )


def remote_line(serverurl):
    return Line(
        WARN,
        'host',
        f'supervisord at {serverurl} is not on this '
        f'host: its boot entry, descriptor limit and '
        f'state_dir are not checked (run the check on '
        f'its host)',
    )


def exit_status(lines):
    return max((EXIT_STATUS[line.level] for line in lines), default=0)


def restart_advice(loaded, installed):
    """What to do when supervisord runs ``loaded`` (OLDER: a version
    without ``slapos.getPluginVersion``) and ``installed`` is installed;
    None when they are the same."""
    if loaded == installed:
        return None
    running = (
        'an older supervisor_slapos'
        if loaded is OLDER
        else f'supervisor_slapos {loaded}'
    )
    return (
        f'supervisord still runs {running}, {installed} is installed: '
        f'restart supervisord (a reload keeps the loaded code; README, '
        f'"Upgrade")'
    )


def plugin_line(loaded, installed):
    advice = restart_advice(loaded, installed)
    if advice is not None:
        return Line(FAIL, 'plugin', advice)
    return Line(
        OK,
        'plugin',
        f'supervisor_slapos {loaded} loaded in supervisord, as installed',
    )


def not_loaded_line(serverurl):
    return Line(
        FAIL,
        'plugin',
        f'supervisord at {serverurl} has no slapos '
        f'namespace: the plugin is not loaded '
        f'([rpcinterface:slapos], then restart or '
        f'reload supervisord)',
    )


def listener_line(process_infos):
    """From ``supervisor.getAllProcessInfo()``."""
    [info] = [
        i
        for i in process_infos
        if (i['group'], i['name']) == (LISTENER, LISTENER)
    ] or [None]
    if info is None:
        return Line(
            FAIL,
            'listener',
            'no [eventlistener:slapos] in '
            'supervisord: no offline start (see '
            'README for its section)',
        )
    if info['statename'] == 'RUNNING':
        return Line(OK, 'listener', f'RUNNING (pid {info["pid"]})')
    if info['statename'] == 'STOPPED':
        return Line(
            FAIL,
            'listener',
            'STOPPED (by hand): no offline start; supervisorctl start slapos',
        )
    return Line(
        FAIL,
        'listener',
        f'{info["statename"]}: its log says why '
        f'(supervisorctl tail slapos stderr); '
        f'then supervisorctl start slapos',
    )


def descriptors_needed(processes):
    return PER_PROCESS * processes + SLACK


def descriptors_line(limit, processes, pid):
    """``limit``: supervisord's (soft, hard) open files limit (None for
    unlimited), or an OSError met reading it; ``processes``: how many
    supervisord holds (each may run)."""
    if isinstance(limit, OSError):
        return Line(
            WARN,
            'descriptors',
            f'cannot read supervisord\'s '
            f'limit: {limit} (run the check '
            f'on supervisord\'s host)',
        )
    soft, hard = limit
    needed = descriptors_needed(processes)
    about = f'{processes} processes need about {needed}'
    if soft is None:
        return Line(OK, 'descriptors', f'no limit; {about}')
    raise_it = (
        f'raise it: prlimit --pid {pid} --nofile='
        f'{2 * needed}:{max(hard or 0, 2 * needed)}'
    )
    if soft < needed:
        return Line(
            FAIL,
            'descriptors',
            f'limit {soft} cannot hold them: {about}; {raise_it}',
        )
    if soft < needed * ROOM:
        return Line(
            WARN,
            'descriptors',
            f'limit {soft}, little room: {about}; {raise_it}',
        )
    return Line(OK, 'descriptors', f'limit {soft}; {about}')


def open_files_limit(pid):
    """(soft, hard) open files limit of process ``pid`` (None:
    unlimited), from ``/proc/<pid>/limits``; OSError when unreadable."""
    with open(f'/proc/{pid}/limits', encoding='ascii') as f:
        for line in f:
            if line.startswith('Max open files'):
                soft, hard = line[len('Max open files') :].split()[:2]
                return tuple(
                    None if value == 'unlimited' else int(value)
                    for value in (soft, hard)
                )
    raise OSError(errno.ENOENT, f'no "Max open files" in /proc/{pid}/limits')


def probe_writable(directory):
    """None when a file can be made in ``directory``, else the OSError
    (a temporary file, removed at once, that the plugin's cleanup at
    start would remove too)."""
    try:
        fd, path = tempfile.mkstemp(
            prefix=TMP_PREFIX + 'check.', suffix=TMP_SUFFIX, dir=directory
        )
        os.close(fd)
        os.unlink(path)
    except OSError as e:
        return e
    return None


def state_dir_line(state_dir, error):
    """``error``: what :func:`probe_writable` said."""
    if error is None:
        return Line(OK, 'state_dir', f'{state_dir} is writable')
    if error.errno == errno.ENOENT:
        return Line(
            WARN,
            'state_dir',
            f'{state_dir} is missing: the '
            f'listener makes it again at its next '
            f'write (what it had recorded is lost)',
        )
    return Line(
        FAIL,
        'state_dir',
        f'{state_dir}: {error.strerror}: the '
        f'listener cannot record its state; free '
        f'or fix that directory',
    )


def boot_command(text):
    """The command (argv, up to a redirection) of the ``@reboot`` line of a
    cron.d file's ``text``; None when there is none. cron's ``\\%`` is a
    ``%``."""
    for line in text.splitlines():
        words = line.split(None, 2)
        if len(words) == 3 and words[0] == '@reboot':
            try:
                argv = shlex.split(words[2].replace('\\%', '%'))
            except ValueError:
                return None
            if '>>' in argv:
                argv = argv[: argv.index('>>')]
            return argv or None
    return None


# the boot command's arguments that name a command, or a file, to exist
COMMAND_OPTIONS = ('--slapos',)
FILE_OPTIONS = ('--cfg', '--slapos-cfg')


def missing_in(argv):
    """The first path ``argv`` needs that is not there (its command, a
    ``--slapos`` command, a ``--cfg`` file), as (path, what); else None."""
    needs = [(argv[0], 'command')]
    for option, value in zip(argv, argv[1:]):
        if option in COMMAND_OPTIONS:
            needs.append((value, 'command'))
        elif option in FILE_OPTIONS:
            needs.append((value, 'file'))
    for path, what in needs:
        there = (
            os.path.isfile(path) and os.access(path, os.X_OK)
            if what == 'command'
            else os.path.isfile(path)
        )
        if not there:
            return path, (
                'an executable file' if what == 'command' else 'a file'
            )
    return None


def boot_line(record):
    """The boot entry the setup recorded (``record``: a
    ``setuprecord.SetupRecord``, or the ValueError met reading it)."""
    if isinstance(record, ValueError):
        return Line(
            WARN, 'boot entry', f'cannot read the setup\'s record: {record}'
        )
    path, again = (
        record.boot_entry,
        (f'run supervisor-slapos-setup --cfg {shlex.quote(record.cfg)} again'),
    )
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except FileNotFoundError:
        return Line(
            FAIL,
            'boot entry',
            f'{path} is missing: supervisord will not start at boot; {again}',
        )
    except (OSError, ValueError) as e:
        return Line(FAIL, 'boot entry', f'{path}: {e}; {again}')
    argv = boot_command(text)
    if argv is None:
        return Line(FAIL, 'boot entry', f'{path} has no @reboot line; {again}')
    missing = missing_in(argv)
    if missing is not None:
        return Line(
            FAIL,
            'boot entry',
            f'{path} names {missing[0]}, which '
            f'is not {missing[1]}; {again} '
            f'(--slapos PATH)',
        )
    return Line(OK, 'boot entry', f'{path} runs {argv[0]} at boot')


def partition_lines(infos):
    """From ``slapos.getAllPartitionInfo()``: a line per partition with a
    ``last_error`` or ``destroying``, else one ``ok`` line."""
    lines = []
    for info in infos:
        partition_id = info['partition_id']
        if info['state'] == 'destroying':
            lines.append(
                Line(
                    WARN,
                    'partition',
                    (
                        f'{partition_id} is destroying (slapgrid\'s '
                        f'.slapos-report-wait-service-list): only its prerm '
                        f'group runs until slapgrid ends the destroy; with no '
                        f'slapgrid run '
                        f'under way, it died half-way: slapos node instance'
                    ),
                )
            )
        if info.get('last_error'):
            lines.append(
                Line(
                    WARN,
                    'partition',
                    (
                        f'{partition_id}: last error: {info["last_error"]} '
                        f'(slapos status {partition_id}; run the operation '
                        f'again)'
                    ),
                )
            )
    if not lines:
        lines.append(
            Line(
                OK,
                'partitions',
                f'{len(infos)} listed, none with a last error or destroying',
            )
        )
    return lines
