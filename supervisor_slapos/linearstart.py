"""``supervisor-slapos-supervisord``: supervisord, its first
configuration read linear (and the incremental read's first).

supervisord reads its whole configuration (every include file) before it
loads any plugin, so the plugin's ``linearread`` can only speed up the
reads after that one. This command installs the linear parser first,
then runs supervisor's own ``supervisord.main()`` with the same arguments:
what supervisord reads, and how it runs, is unchanged.

``--slapos-cfg F`` starts a SlapOS node's supervisord as ``slapos node
supervisord --cfg F`` does (slapos.core's ``createSupervisordConfiguration``
writes slapgrid's supervisord.conf, then supervisord runs with ``-c`` that
file and an empty environment), through this command. With ``--slapos
PATH`` (the node's ``slapos`` command), all of that runs in that command's
own Python and ``sys.path``, as slapgrid's code runs when that command
launches supervisord: on a node built by buildout, its eggs first. The
Python is the one its ``#!`` line names; the ``sys.path`` is what running
the script as a module (not as ``__main__``: its command does not run)
makes of that Python's.
"""

import contextlib
import json
import logging
import os
import subprocess
import sys
import time

USAGE = (
    'usage: supervisor-slapos-supervisord [supervisord options]\n'
    '       supervisor-slapos-supervisord --slapos-cfg SLAPOS_CFG '
    '[--slapos PATH]'
)
# how long slapgrid_start waits for the supervisord it started to answer
# RUNNING (slapos.core's launchSupervisord tries 5 times, with socket
# timeouts of 1 to 20 s)
START_TIMEOUT = 60
# the name the slapos script runs under in slapos_start: not __main__
SCRIPT_RUN_NAME = 'supervisor_slapos_slapos_script'
# slapgrid's supervisord.conf, in <instance_root>/etc/ (slapos.core's
# _getSupervisordConfigurationFilePath)
CONF_NAME = 'supervisord.conf'


def script_interpreter(script):
    """The interpreter argv of ``script``'s ``#!`` line, as the kernel
    reads it (the interpreter, then at most one argument: the rest of the
    line); ValueError when it has none."""
    try:
        with open(script, 'rb') as f:
            line = f.readline(4096)
    except OSError as e:
        raise ValueError(f'--slapos {script}: {e.strerror}') from e
    if not line.startswith(b'#!'):
        raise ValueError(f'--slapos {script}: not a script with a #! line')
    interpreter, _, argument = line[2:].strip().partition(b' ')
    if not interpreter:
        raise ValueError(f'--slapos {script}: an empty #! line')
    argument = argument.strip()
    return [os.fsdecode(interpreter)] + (
        [os.fsdecode(argument)] if argument else []
    )


def slapos_start_argv(slapos_cfg, slapos):
    """The argv that runs :func:`slapgrid_start` in the Python of the
    ``slapos`` script, with the ``sys.path`` that script runs with
    (``sys.path[0]`` its directory, then whatever the script puts on it
    before its command)."""
    slapos = os.path.abspath(slapos)
    code = (
        f'import runpy, sys\n'
        f'sys.path[0] = {os.path.dirname(os.path.realpath(slapos))!r}\n'
        f'runpy.run_path({slapos!r}, run_name={SCRIPT_RUN_NAME!r})\n'
        f'try:\n'
        f'    from supervisor_slapos.linearstart import slapgrid_start\n'
        f'except ImportError as e:\n'
        f'    sys.exit("supervisor-slapos-supervisord: the plugin is not '
        f'importable by " + sys.executable + " (the Python of " + '
        f'{slapos!r} + "): " + str(e))\n'
        f'error = slapgrid_start({slapos_cfg!r})\n'
        f'sys.exit(error and "supervisor-slapos-supervisord: " + error)\n'
    )
    return [*script_interpreter(slapos), '-c', code]


def slapgrid_start(slapos_cfg):
    """Start slapgrid's supervisord as slapos.core's ``launchSupervisord``
    does, its first read linear; returns None once it answers RUNNING,
    else an error message.

    slapgrid's supervisord.conf is written by slapos.core's own code; then,
    when a supervisord already answers on slapgrid's socket, slapos.core's
    own ``launchSupervisord`` does what it does then (it finds it running).
    Else supervisord runs as slapgrid runs it (``main(['-c', that file])``
    in this Python with this one's sys.path and an empty environment; it
    daemonizes), its reads installed first, and this waits until it
    answers.

    supervisord's interpreter is started first (:class:`ReadySupervisord`),
    so that its own imports run beside slapos.core's; it is told to go on
    once the file is written."""
    from supervisor_slapos.slaposcfg import read_slapos_cfg

    try:
        root = read_slapos_cfg(slapos_cfg).instance_root
    except ValueError as e:
        return str(e)
    if root is None:
        return f'{slapos_cfg}: no [slapos] instance_root'
    supervisord = ReadySupervisord(os.path.join(root, 'etc', CONF_NAME))
    try:
        return start_beside_slapgrid(root, supervisord)
    finally:
        supervisord.cancel()


def start_beside_slapgrid(root, supervisord):
    """:func:`slapgrid_start` once the node's ``instance_root`` is known
    and ``supervisord`` (a :class:`ReadySupervisord`) is getting ready."""
    try:
        from slapos.grid.svcbackend import (
            _getSupervisordConfigurationFilePath,
            _getSupervisordSocketPath,
            createSupervisordConfiguration,
            getSupervisorRPC,
            launchSupervisord,
        )
    except ImportError as e:
        return f'slapos.core is not importable here: {e}'
    logging.basicConfig(level=logging.INFO)
    logger = logging.getLogger(__name__)
    createSupervisordConfiguration(root, logger)
    socket = _getSupervisordSocketPath(root, logger)

    def state():
        try:
            with getSupervisorRPC(socket) as rpc:
                return rpc.getState()['statename']
        except Exception:  # what launchSupervisord takes for "not running"
            return None

    if state() is not None:
        launchSupervisord(root, logger)
        return None
    conf = _getSupervisordConfigurationFilePath(root)
    logger.info(
        'Launching supervisord with clean environment, its first '
        'configuration read linear.'
    )
    status = supervisord.go(conf)
    if status:
        return f'supervisord exited with status {status}'
    deadline = time.monotonic() + START_TIMEOUT
    while state() != 'RUNNING':
        if time.monotonic() > deadline:
            return (
                f'supervisord did not answer RUNNING on {socket} '
                f'within {START_TIMEOUT} s'
            )
        time.sleep(0.1)
    logger.info('Supervisord started.')
    return None


class ReadySupervisord:
    """supervisord's interpreter (``main(['-c', conf])`` in this Python, an
    empty environment), started ahead and ready: supervisor and the plugin
    imported, the reads installed, it waits on its stdin (see
    :func:`main_when_told`). :meth:`go` lets it run, with this process's
    ``sys.path`` as it is then, and waits until it has daemonized;
    :meth:`cancel` makes it exit without running supervisord."""

    def __init__(self, conf):
        self.spawn(conf)

    def spawn(self, conf):
        self.conf = conf
        code = (
            f'import sys; sys.path = {sys.path!r}; '
            f'from supervisor_slapos.linearstart import main_when_told; '
            f'main_when_told({["-c", conf]!r})'
        )
        self.process = subprocess.Popen(
            [sys.executable, '-c', code], env={}, stdin=subprocess.PIPE
        )

    def go(self, conf):
        """supervisord's exit status once it has daemonized (0); ``conf``
        is the file it runs, started anew when it is not the one it was
        made ready for."""
        if conf != self.conf:
            self.cancel()
            self.spawn(conf)
        self.process.communicate(json.dumps(sys.path).encode() + b'\n')
        return self.process.returncode

    def cancel(self):
        if self.process.returncode is None:
            self.process.communicate(b'')


def about(argv):
    """What ``-h``/``--help`` and ``-v``/``--version`` say of this command
    before supervisord's own words (None for any other arguments)."""
    from supervisor_slapos import __version__

    if argv[:1] in (['-v'], ['--version']):
        from supervisor.options import VERSION

        return f'supervisor_slapos {__version__}, supervisor {VERSION}'
    if argv[:1] in (['-h'], ['--help']):
        return (
            f'supervisor-slapos-supervisord (supervisor_slapos '
            f'{__version__}): supervisord with its first configuration '
            f'read linear, and its later re-reads incremental; the same '
            f'options as supervisord.\n{USAGE}\n\nsupervisord\'s own '
            f'help:\n'
        )
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = about(argv)
    if text is not None:
        print(text)
        if argv[0] in ('-v', '--version'):
            return
    if argv[:1] == ['--slapos-cfg']:
        if len(argv) == 2:
            error = slapgrid_start(argv[1])
            if error is None:
                return
        elif len(argv) == 4 and argv[2] == '--slapos':
            try:
                start = slapos_start_argv(argv[1], argv[3])
            except ValueError as e:
                error = str(e)
            else:
                os.execv(start[0], start)
        else:
            sys.exit(USAGE)
        sys.exit(f'supervisor-slapos-supervisord: {error}')
    ready_supervisord().main(argv)


def ready_supervisord():
    """supervisor's ``supervisord`` module, imported once the linear and
    incremental reads are installed."""
    # imported here: with --slapos, supervisor is to be imported from the
    # slapos command's sys.path, not this Python's
    from supervisor_slapos import incrementalread, linearread

    linearread.install(True)
    incrementalread.install(True, True)  # that read also fills its cache
    from supervisor import supervisord

    return supervisord


def main_when_told(argv):
    """``main(argv)`` in the interpreter of a :class:`ReadySupervisord`:
    everything made ready first, then one line read from stdin, the JSON of
    the ``sys.path`` to run with; at end of file, nothing runs. stdin is
    then ``/dev/null``, as for a supervisord started without it."""
    supervisord = ready_supervisord()
    # what supervisord imports when it loads the plugin (it imports it
    # again then, and reports what fails)
    with contextlib.suppress(Exception):
        import supervisor_slapos.rpcinterface  # noqa: F401
    line = sys.stdin.buffer.readline()
    if not line:
        return
    sys.path[:] = json.loads(line)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    supervisord.main(argv)


if __name__ == '__main__':
    main()
