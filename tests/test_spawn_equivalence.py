"""The floor spawn (``floorspawn``) against supervisor's own, on a real
supervisord: the same programs started both ways must see the same world
and be reported the same way.

``make spawn-pythons`` runs this file on every Python from 3.9 to 3.13.
Run by GNU make (a glibc ``posix_spawn``), supervisord ignores glibc's
signals 32 and 33 and so must the children; run by pytest directly, it
does not: both ways are worth a run on 3.9 or 3.10."""

import contextlib
import os
import pwd
import re
import shutil
import tempfile
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import pytest
from supervisor.xmlrpc import Faults as SupervisorFaults

from testbed.node import dedent
from testbed.polling import wait_until
from testbed.proc import children_of, cmdline, open_fds, stat
from testbed.users import run_as, temporary_user

# The probe writes what it sees as its own process (its shell's pid is
# the spawned process), a line on stdout and on stderr, then sleeps.
PROBE = dedent(r"""
    #!/bin/sh
    me=$$
    out="$PROBE_DIR/$SUPERVISOR_PROCESS_NAME"
    {
      echo "minflt $(cut -d' ' -f10 /proc/$me/stat)"
      echo "cwd $(readlink /proc/$me/cwd)"
      echo "pgrp $(cut -d' ' -f5 /proc/$me/stat) pid $me"
      echo "sid $(cut -d' ' -f6 /proc/$me/stat)"
      grep -E '^(Umask|Uid|Gid|Groups|SigIgn|CapEff|CapPrm|NoNewPrivs)' \
        /proc/$me/status
      for fd in /proc/$me/fd/*; do echo "fd ${fd##*/} $(readlink $fd)"; done
    } > "$out.tmp"
    tr '\0' '\n' < /proc/$me/cmdline > "$out.argv"
    tr '\0' '\n' < /proc/$me/environ > "$out.env"
    mv "$out.tmp" "$out"
    echo "out of $SUPERVISOR_PROCESS_NAME"
    echo "err of $SUPERVISOR_PROCESS_NAME" >&2
    exec sleep 3600
    """)

PROGRAM = dedent("""
    [program:{name}]
    command={command}
    autostart=false
    autorestart=false
    startsecs={startsecs}
    startretries=0
    stdout_logfile={logs}/{name}.out
    stderr_logfile={logs}/{name}.err
    {more}
    """)


@pytest.fixture
def shared_dir():
    """A directory every user may enter (tmp_path's parents are root's
    only), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix='floorspawn-'))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


INHERITED = 7


@dataclass
class Supervisord:
    """A node (not started) and who its supervisord runs as."""

    node: object
    as_root: bool
    name: str  # the user it runs as
    switch_to: object  # as root: a user made for the test, listed as a
    # member of its own primary group (pwd entry); else None


@pytest.fixture(params=['root', 'ordinary'])
def supervisord(request, make_node, shared_dir):
    """A node whose supervisord runs as root, or as an ordinary user (a
    user made for the test, run as ``testbed.users.run_as`` says; or the
    tests' own user when they do not run as root)."""
    as_root = request.param == 'root'
    if as_root and os.getuid() != 0:
        pytest.skip('supervisord as root: the tests do not run as root')
    with contextlib.ExitStack() as stack:
        # an absolute name: the node where an ordinary user may reach it
        node = make_node(
            str(shared_dir / 'node'), rpc_options='node_files = firewall\n'
        )
        name = pwd.getpwuid(os.getuid()).pw_name
        switch_to = None
        if as_root:
            switch_to = stack.enter_context(
                temporary_user('spawnu', in_own_group=True)
            )
        elif os.getuid() == 0:
            record = stack.enter_context(temporary_user('spawns'))
            run_as(node, record)
            name = record.pw_name
        # supervisord inherits a descriptor (without close-on-exec), as
        # from a shell: supervisor's child closes it
        node.command_prefix = (
            'sh',
            '-c',
            f'exec "$@" {INHERITED}</dev/null',
            'sh',
            *node.command_prefix,
        )
        yield Supervisord(node, as_root, name, switch_to)
        node.cleanup()


def programs(shared, supervisord):
    """``(running, failing)``: {name: (command, startsecs, more)} of the
    programs that run and of those that fail, either way."""
    probe = shared / 'probe'
    probe.write_text(PROBE)
    probe.chmod(0o755)
    not_executable = shared / 'not-executable'
    not_executable.write_text('#!/bin/sh\n')
    not_executable.chmod(0o644)
    bad_interpreter = shared / 'bad-interpreter'
    bad_interpreter.write_text('#!/no/such/interpreter\n')
    bad_interpreter.chmod(0o755)
    no_shebang = shared / 'no-shebang'  # sh would run it: the kernel not
    no_shebang.write_text('exec sleep 3600\n')
    no_shebang.chmod(0o755)
    closed = shared / 'closed'  # root's only
    (closed / 'sub').mkdir(parents=True)
    closed.chmod(0o700)
    shutil.copy(probe, closed / 'probe')
    work = shared / 'work'
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    env = f'environment=PROBE_DIR="{work}",X="two words",EMPTY=""'
    running = {
        'plain': (
            f'{probe} a "b c" \'\'',
            1,
            f'directory={work}\numask=027\n{env}',
        ),
        'redirected': (f'{probe}', 1, f'redirect_stderr=true\n{env}'),
        'viapath': (f'sh {probe} found on PATH', 1, env),
    }
    failing = {
        'missing': (f'{shared}/no-such-command', 0, ''),
        'notexec': (f'{not_executable}', 0, ''),
        # pass supervisor's checks, fail in its child
        'badinterp': (f'{bad_interpreter}', 1, ''),
        'nochdir': (f'{probe}', 1, f'directory={shared}/no-such-dir'),
        'noshebang': (f'{no_shebang}', 1, ''),
        'eqenv': (f'{probe}', 1, f'environment="A=B"="x",{env[12:]}'),
        'nulenv': (f'{probe}', 1, f'environment=NUL="a\0b",{env[12:]}'),
    }
    if not supervisord.as_root:
        # its own user: no switch; another: refused
        running['ownuser'] = (f'{probe}', 1, f'user={supervisord.name}\n{env}')
        failing['otheruser'] = (f'{probe}', 1, f'user=root\n{env}')
    else:
        name = supervisord.switch_to.pw_name
        running['nobody'] = (
            f'{probe} as nobody',
            1,
            f'user=nobody\ndirectory={work}\numask=077\n{env}',
        )
        # left to supervisor's own spawn (setpriv would search PATH again)
        running['nobodyviapath'] = (f'sh {probe}', 1, f'user=nobody\n{env}')
        # a user listed in its own primary group: that gid twice
        running['owngroup'] = (f'{probe}', 1, f'user={name}\n{env}')
        failing.update(
            {
                'usernoshebang': (f'{no_shebang}', 1, f'user={name}'),
                'userbadinterp': (f'{bad_interpreter}', 1, f'user={name}'),
                'userclosedpath': (
                    f'{closed}/probe',
                    1,
                    f'user={name}\n{env}',
                ),
                'userclosedir': (
                    f'{probe}',
                    1,
                    f'user={name}\ndirectory={closed}/sub\n{env}',
                ),
            }
        )
    return running, failing


def include_text(shared, names_to_programs):
    logs = shared / 'logs'
    logs.mkdir(exist_ok=True)
    logs.chmod(0o777)
    groups = (
        '[group:slappart0]\nprograms='
        + ','.join(sorted(names_to_programs))
        + '\n\n'
    )
    return groups + '\n'.join(
        PROGRAM.format(
            name=name,
            command=command,
            startsecs=startsecs,
            logs=logs,
            more=more,
        )
        for name, (command, startsecs, more) in sorted(
            names_to_programs.items()
        )
    )


def settled(node, names):
    """{name: (statename, exitstatus, spawnerr)} once no process is
    STARTING or BACKOFF."""

    def done():
        infos = {
            i['name']: i
            for i in node.rpc.supervisor.getAllProcessInfo()
            if i['name'] in names
        }
        if any(
            i['statename'] in ('STARTING', 'BACKOFF') for i in infos.values()
        ):
            return None
        return {
            name: (i['statename'], i['exitstatus'], i['spawnerr'])
            for name, i in infos.items()
        }

    return wait_until(done, what='processes settled')


def seen(shared, name):
    """What the probe ``name`` saw, normalized where two runs differ by
    nature (pids, pipe inodes)."""
    work = shared / 'work'
    lines = (work / name).read_text().splitlines()
    fields = {}
    for line in lines:
        key, _, value = line.partition(' ')
        if key == 'pgrp':
            pgrp, _, pid = value.partition(' pid ')
            value = 'own group' if pgrp == pid else f'group of {pgrp}'
        if key == 'fd':
            value = re.sub(r'pipe:\[\d+\]', 'pipe', value)
        fields.setdefault(key, []).append(value)
    minflt = int(fields.pop('minflt')[0])
    fields['argv'] = (work / f'{name}.argv').read_text()
    fields['env'] = sorted((work / f'{name}.env').read_text().splitlines())
    return fields, minflt


def logs_of(shared):
    return {p.name: p.read_text() for p in sorted((shared / 'logs').iterdir())}


def log_lines(text, names):
    """supervisord's lines about ``names`` (spawned, success, exited...),
    pids out, the plugin's own lines left out."""
    lines = []
    for line in text.splitlines():
        message = line.split(' ', 2)[-1]
        if any(
            f"'{n}'" in message or f' {n} ' in message for n in names
        ) and not message.startswith('INFO slapos:'):
            lines.append(re.sub(r'pid \d+', 'pid N', message))
    return lines


def run_once(node, shared, names, start):
    """Start ``names`` with ``start()``; return what each child saw, the
    log files, the states and supervisord's log lines of this run."""
    for directory in ('work', 'logs'):
        for path in (shared / directory).iterdir():
            path.unlink()
    log = node.root / 'supervisord.log'
    offset = log.stat().st_size
    start()
    states = settled(node, names)
    running = [n for n, s in states.items() if s[0] == 'RUNNING']
    wait_until(
        lambda: (
            all((shared / 'work' / n).exists() for n in running)
            and all(
                f'err of {n}' in ''.join(logs_of(shared).values())
                for n in running
            )
        ),
        what='probes written and logged',
    )
    result = (
        {n: seen(shared, n) for n in running},
        logs_of(shared),
        states,
        log_lines(log.read_bytes()[offset:].decode(), names),
    )
    node.rpc.supervisor.stopProcessGroup('slappart0')
    return result


def test_floor_spawn_is_supervisors_spawn_as_seen_by_child_and_log(
    supervisord, shared_dir
):
    running, failing = programs(shared_dir, supervisord)
    everything = {**running, **failing}
    node = supervisord.node
    node.make_partition('slappart0')
    node.include_file('slappart0.conf').write_text(
        include_text(shared_dir, everything)
    )
    node.start()
    names = sorted(everything)
    flags = (
        Path(f'/proc/{node.process.pid}/fdinfo/{INHERITED}')
        .read_text()
        .split('flags:')[1]
        .split()[0]
    )
    assert not int(flags, 8) & os.O_CLOEXEC, flags

    own_faults, floor_faults = {}, {}

    def own():
        for name in names:
            try:
                node.rpc.supervisor.startProcess(f'slappart0:{name}', False)
            except xmlrpc.client.Fault as fault:
                # SPAWN_ERROR: a child that fails at once (chdir, exec) was
                # reaped before startProcess answered, a race within
                # supervisor's own startProcess, not a difference
                if (
                    fault.faultCode != SupervisorFaults.SPAWN_ERROR
                    or name not in failing
                ):
                    own_faults[name] = fault.faultCode

    def floor():
        for result in node.rpc.slapos.startAllPartitions():
            if result['status'] in (
                SupervisorFaults.NO_FILE,
                SupervisorFaults.NOT_EXECUTABLE,
            ):
                floor_faults[result['name']] = result['status']

    own_seen, own_logs, own_states, own_lines = run_once(
        node, shared_dir, names, own
    )
    floor_seen, floor_logs, floor_states, floor_lines = run_once(
        node, shared_dir, names, floor
    )
    assert (
        floor_faults
        == own_faults
        == {
            'missing': SupervisorFaults.NO_FILE,
            'notexec': SupervisorFaults.NOT_EXECUTABLE,
        }
    )

    assert sorted(own_seen) == sorted(running)
    for name in running:
        assert floor_seen[name][0] == own_seen[name][0], name
    assert floor_logs == own_logs
    assert floor_states == own_states
    assert sorted(floor_lines) == sorted(own_lines)
    fatal = set(failing) - {'missing', 'notexec'}
    assert {n for n, s in own_states.items() if s[0] == 'FATAL'} == fatal
    for name, why in [
        ('nochdir', "couldn't chdir"),
        ('badinterp', "couldn't exec"),
        ('noshebang', 'ENOEXEC'),
        ('eqenv', 'illegal environment variable name'),
        ('nulenv', 'embedded null byte'),
        ('usernoshebang', 'ENOEXEC'),
        ('userbadinterp', "couldn't exec"),
        ('userclosedpath', 'EACCES'),
        ('userclosedir', "couldn't chdir"),
    ]:
        if name in failing:
            assert (
                f'WARN exited: {name} (exit status 127; not expected)'
                in own_lines
            )
            assert why in own_logs[f'{name}.err'], name
    assert any(line.startswith("INFO spawned: 'plain'") for line in own_lines)
    assert any(line.startswith('INFO success: plain') for line in own_lines)
    if supervisord.as_root:
        groups = next(
            f'{key} {value[0]}'
            for key, value in own_seen['owngroup'][0].items()
            if key.startswith('Groups:')
        ).split()[1:]
        gid = str(supervisord.switch_to.pw_gid)
        assert groups.count(gid) == 2, groups
        assert (
            "slapos: supervisor's own spawn for 'nobodyviapath': its "
            "command is found on PATH"
            in (node.root / 'supervisord.log').read_text()
        )
    # The floor's children were never a copy of supervisord: far fewer
    # page faults (counted across exec) than a forked Python's child
    # (~70 against ~370 here; ~180 through setpriv's exec).
    for name in set(running) - {'nobodyviapath'}:
        factor = 1.5 if name in ('nobody', 'owngroup') else 2
        assert floor_seen[name][1] * factor < own_seen[name][1], (
            name,
            floor_seen[name][1],
            own_seen[name][1],
        )


def minflt_once_sleeping(node, name):
    """The minor page faults of ``name``'s process (counted across its
    execs) once it runs ``sleep``."""

    def sleeping():
        pid = node.pids('slappart0')[name]
        try:
            command = cmdline(pid)
            minor_faults = stat(pid).minor_faults
        except OSError:
            return None
        if not command.startswith(b'sleep\0'):
            return None
        return minor_faults

    return wait_until(sleeping, what=f'{name} sleeping')


def test_startPartition_spawns_at_the_floor(node):
    node.make_partition('slappart0', run=['a'])
    assert node.rpc.slapos.startPartition('slappart0') is True
    floor = minflt_once_sleeping(node, 'a')
    node.rpc.supervisor.stopProcess('slappart0:a')
    node.rpc.supervisor.startProcess('slappart0:a')
    own = minflt_once_sleeping(node, 'a')
    assert floor * 2 < own, (floor, own)


SLEEPERS = 12
PROCESS_LIMIT = 8  # supervisord and 7 children
CYCLES = 4


def test_failed_spawns_leave_supervisord_as_it_was(make_node, shared_dir):
    """Spawns that fail (the user's process limit reached; a NUL byte in
    the environment) leave no descriptor and no child in supervisord, at
    each start of every process, however many times."""
    node = make_node(str(shared_dir / 'node'))
    with contextlib.ExitStack() as stack:
        if os.getuid() == 0:  # else: the NUL bytes only
            node.config.write_text(
                node.config.read_text().replace(
                    '[supervisord]\n',
                    f'[supervisord]\nminprocs = {PROCESS_LIMIT}\n',
                )
            )
            run_as(
                node,
                stack.enter_context(temporary_user('spawnl')),
                prefix=('prlimit', f'--nproc={PROCESS_LIMIT}', '--'),
            )
        stack.callback(node.cleanup)  # before its user and directory go
        sleepers = {
            f'sleeper{i:02}': ('/bin/sleep 3600', 0, '')
            for i in range(SLEEPERS)
        }
        nul = {
            f'nul{i}': ('/bin/sleep 3600', 1, 'environment=X="a\0b"')
            for i in range(3)
        }
        node.make_partition('slappart0')
        node.include_file('slappart0.conf').write_text(
            include_text(shared_dir, {**sleepers, **nul})
        )
        node.start()
        pid = node.process.pid
        names = sorted({**sleepers, **nul})

        def pipes_and_children():
            return (
                sorted(
                    fd
                    for fd, target in open_fds(pid).items()
                    if target.startswith('pipe:')
                ),
                children_of(pid),
            )

        before = pipes_and_children()
        for _ in range(CYCLES):
            node.rpc.slapos.startAllPartitions()
            states = settled(node, names)
            node.rpc.supervisor.stopProcessGroup('slappart0')
            # the pipes of the processes stopped are closed as they drain
            wait_until(
                lambda: pipes_and_children() == before,
                what=f'supervisord with its pipes {before[0]} alone '
                f'and no child',
            )
        assert {states[n][0] for n in nul} == {'FATAL'}
        if os.getuid() == 0:
            assert 'Too many processes in process table' in {
                states[n][2].split(' to spawn')[0] for n in sleepers
            }
