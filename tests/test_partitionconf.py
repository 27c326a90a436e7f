import os
import pwd

import pytest
from supervisor.options import UnhosedConfigParser

from supervisor_slapos import partitionconf


def make_partition(root, pid, run=(), service=(), not_executable=()):
    base = root / pid
    for kind, names in (
        ('run', run),
        ('service', service),
        ('run', not_executable),
    ):
        directory = base / 'etc' / kind
        directory.mkdir(parents=True, exist_ok=True)
        for name in names:
            path = directory / name
            path.write_text('#!/bin/sh\n')
            path.chmod(0o644 if name in not_executable else 0o755)
    return base


def parse(text):
    parser = UnhosedConfigParser()
    parser.read_string(text)
    return parser


def test_generates_slapgrid_format_sorted(tmp_path):
    base = make_partition(tmp_path, 'slappart0', run=['b', 'a'], service=['w'])
    text = partitionconf.generate_partition_conf(str(tmp_path), 'slappart0')
    parser = parse(text)
    assert parser.sections() == [
        'group:slappart0',
        'program:slappart0_a',
        'program:slappart0_b',
        'program:slappart0_w',
    ]
    assert (
        parser.get('group:slappart0', 'programs')
        == 'slappart0_a,slappart0_b,slappart0_w'
    )
    program = dict(parser.items('program:slappart0_w'))
    owner = pwd.getpwuid(base.stat().st_uid)
    assert program == {
        'directory': str(base),
        'command': str(base / 'etc' / 'service' / 'w'),
        'process_name': 'w-on-watch',
        'autostart': 'false',
        'autorestart': 'false',
        'startsecs': '0',
        'startretries': '0',
        'exitcodes': '0',
        'stopsignal': 'TERM',
        'stopwaitsecs': '60',
        'stopasgroup': 'true',
        'killasgroup': 'true',
        'user': str(base.stat().st_uid),
        'group': str(base.stat().st_gid),
        'serverurl': 'AUTO',
        'redirect_stderr': 'true',
        'stdout_logfile': f'{base}/.slappart0_w.log',
        'stdout_logfile_maxbytes': '100KB',
        'stdout_logfile_backups': '1',
        'stderr_logfile': f'{base}/.slappart0_w.log',
        'stderr_logfile_maxbytes': '100KB',
        'stderr_logfile_backups': '1',
        'environment': f'USER="{owner.pw_name}",LOGNAME="{owner.pw_name}",'
        f'HOME="{owner.pw_dir}"',
    }
    assert dict(parser.items('program:slappart0_a'))['process_name'] == 'a'


def test_owner_of_partition_directory_always_written(tmp_path):
    base = make_partition(tmp_path, 'slappart0', run=['a'])
    os.chown(base, 65534, 65534) if os.geteuid() == 0 else None
    st = base.stat()
    text = partitionconf.generate_partition_conf(str(tmp_path), 'slappart0')
    program = dict(parse(text).items('program:slappart0_a'))
    assert program['user'] == str(st.st_uid)
    assert program['group'] == str(st.st_gid)
    assert program['environment'].startswith('USER="')
    assert 'HOME="' in program['environment']


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to chown')
def test_owner_without_passwd_entry_is_named_by_its_number(tmp_path):
    """Where slapgrid fails (pwd.getpwuid raises KeyError)."""
    base = make_partition(tmp_path, 'slappart0', run=['a'])
    os.chown(base, 123456, 654321)
    text = partitionconf.generate_partition_conf(str(tmp_path), 'slappart0')
    program = dict(parse(text).items('program:slappart0_a'))
    assert (program['user'], program['group']) == ('123456', '654321')
    assert program['environment'] == (
        f'USER="123456",LOGNAME="123456",HOME="{base}"'
    )


def test_skips_non_executables_and_unsafe_names(tmp_path):
    make_partition(
        tmp_path,
        'slappart0',
        run=['a', 'b;c', 'd,e', 'f%g'],
        not_executable=['readme'],
    )
    text = partitionconf.generate_partition_conf(str(tmp_path), 'slappart0')
    assert parse(text).get('group:slappart0', 'programs') == 'slappart0_a'


def test_partition_without_entries_gets_a_comment_only(tmp_path):
    (tmp_path / 'slappart0').mkdir()
    text = partitionconf.generate_partition_conf(str(tmp_path), 'slappart0')
    assert parse(text).sections() == []
    assert text.startswith(';')


def test_generation_is_stable(tmp_path):
    make_partition(tmp_path, 'slappart0', run=['z', 'a', 'm'])
    texts = {
        partitionconf.generate_partition_conf(str(tmp_path), 'slappart0')
        for _ in range(3)
    }
    assert len(texts) == 1


def test_entry_in_run_and_service_is_the_service_in_run_place(tmp_path):
    make_partition(tmp_path, 'slappart0', run=['x', 'y'], service=['x'])
    programs = partitionconf.partition_programs(
        str(tmp_path / 'slappart0'), 'slappart0'
    )
    assert [(p.program_id, p.process_name) for p in programs] == [
        ('slappart0_x', 'x-on-watch'),
        ('slappart0_y', 'y'),
    ]
