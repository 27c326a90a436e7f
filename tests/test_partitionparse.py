import pytest
from supervisor.options import ServerOptions

from supervisor_slapos import declarations as names_cache
from supervisor_slapos import groupapply, nodeconfig, partitionparse
from supervisor_slapos.ownership import Ownership
from supervisor_slapos.partitionview import PartitionView


@pytest.fixture
def options():
    options = ServerOptions()
    options.environ_expansions = {'ENV_HOME': '/root'}
    return options


def parse(options, include_dir, texts, pid='slappart0', taken=()):
    return partitionparse.parse_partition(
        options, PartitionView(pid, str(include_dir), node_names=taken), texts
    )


def test_parse_builds_groups_and_maps_files(options, tmp_path):
    parsed = parse(
        options,
        tmp_path,
        {
            'slappart0.conf': '[group:slappart0]\nprograms=slappart0_a\n'
            '[program:slappart0_a]\ncommand=sleep 1\n',
            'slappart0-x.conf': '[program:slappart0-x]\ncommand=sleep 2\n',
        },
    )
    assert {group.name for group in parsed.groups} == {
        'slappart0',
        'slappart0-x',
    }


def test_here_expands_to_the_include_directory(options, tmp_path):
    parsed = parse(
        options,
        tmp_path,
        {'slappart0-x.conf': '[program:slappart0-x]\ncommand=%(here)s/run\n'},
    )
    (group,) = parsed.groups
    assert group.process_configs[0].command == f'{tmp_path}/run'


def test_env_expansions_are_supervisords(options, tmp_path):
    parsed = parse(
        options,
        tmp_path,
        {
            'slappart0-x.conf': '[program:slappart0-x]\n'
            'command=%(ENV_HOME)s/run\n'
        },
    )
    assert parsed.groups[0].process_configs[0].command == '/root/run'


def test_parse_warnings_do_not_accumulate(options, tmp_path):
    before = list(options.parse_warnings)
    parse(
        options,
        tmp_path,
        {
            'slappart0-x.conf': '[program:slappart0-x]\ncommand=x\n'
            'stdout_logfile_maxbytes=0\n'
        },
    )
    assert options.parse_warnings == before


@pytest.mark.parametrize(
    'text, needle',
    [
        ('[program:slappart1]\ncommand=x\n', 'not owned'),
        ('[supervisord]\n', 'not allowed'),
        ('[program:slappart0-main]\ncommand=x\n', 'clashes with a node group'),
        ('[program:slappart0]\ncommand=x\n', 'belongs to slappart0.conf'),
        ('garbage', 'no section headers'),
    ],
)
def test_parse_refuses(options, tmp_path, text, needle):
    with pytest.raises(partitionparse.ConfigError) as info:
        parse(
            options,
            tmp_path,
            {'slappart0-x.conf': text},
            taken={'slappart0-main'},
        )
    assert needle in str(info.value)
    assert 'slappart0-x.conf' in str(info.value)


def test_diff(options, tmp_path):
    old = parse(
        options,
        tmp_path,
        {
            'slappart0-a.conf': '[program:slappart0-a]\ncommand=x\n',
            'slappart0-b.conf': '[program:slappart0-b]\ncommand=x\n',
        },
    )
    new = parse(
        options,
        tmp_path,
        {
            'slappart0-b.conf': '[program:slappart0-b]\ncommand=y\n',
            'slappart0-c.conf': '[program:slappart0-c]\ncommand=x\n',
        },
    )
    current = {g.name: g for g in old.groups}
    changes = groupapply.diff(current, new)
    assert changes.as_list() == [
        ['slappart0-c'],
        ['slappart0-b'],
        ['slappart0-a'],
    ]


# the cost of a big file: its lines are scanned for errors only


class CountingText(str):
    """A file's text that counts the scans of its lines."""

    scans = 0

    def splitlines(self, *args, **kwargs):
        type(self).scans += 1
        return super().splitlines(*args, **kwargs)


def big_partition_text(pid, count, last=None):
    """``P.conf`` of ``count`` programs; ``last`` a section header to
    end the file with."""
    names = [f'{pid}_e{i}' for i in range(count)]
    text = f'[group:{pid}]\nprograms={",".join(names)}\n'
    for name in names:
        text += f'\n[program:{name}]\ncommand=/bin/true\nstartsecs=0\n'
    if last is not None:
        text += f'\n{last}\ncommand=/bin/true\n'
    return text


def test_a_big_file_that_parses_has_its_lines_scanned_at_most_once(
    options, tmp_path, monkeypatch
):
    monkeypatch.setattr(CountingText, 'scans', 0)
    text = CountingText(big_partition_text('slappart0', 500))
    parsed = parse(options, tmp_path, {'slappart0.conf': text})
    assert len(parsed.groups[0].process_configs) == 500
    # once per file at most, not once per section (500 scans of 500
    # sections: 68 s of a frozen supervisord at 3,000 entries)
    assert CountingText.scans <= 1


def test_errors_at_the_end_of_a_big_file_name_the_right_line(
    options, tmp_path
):
    text = big_partition_text('slappart0', 500, last='[program:slappart1]')
    line = text.splitlines().index('[program:slappart1]') + 1
    with pytest.raises(partitionparse.ConfigError) as info:
        parse(options, tmp_path, {'slappart0.conf': text})
    assert f"'{tmp_path}/slappart0.conf', line {line})" in str(info.value)
    assert 'not owned' in str(info.value)


# Declarations: which files declare which names, read again only when
# they change


def count_reads(monkeypatch):
    reads = []
    real = names_cache.declared_names

    def spy(text, filename=None):
        reads.append(filename)
        return real(text, filename)

    monkeypatch.setattr(names_cache, 'declared_names', spy)
    return reads


def test_declarations_read_each_file_again_only_when_it_changed(
    tmp_path, monkeypatch
):
    from supervisor_slapos.files import atomic_write

    (tmp_path / 'slappart0.conf').write_text('[program:slappart0_a]\n')
    (tmp_path / 'slappart0-x.conf').write_text('[program:slappart0-y]\n')
    (tmp_path / 'slappart1.conf').write_text('# no entries\n')
    (tmp_path / 'firewall.conf').write_text('[program:firewall]\n')
    declarations = names_cache.Declarations(
        str(tmp_path), Ownership(frozenset({'firewall'}))
    )
    reads = count_reads(monkeypatch)
    # every stamp trusted (the files are just written: see below)
    monkeypatch.setattr(names_cache, 'TIMESTAMP_GRANULARITY_NS', -(10**18))
    assert declarations.of_all() == {
        'slappart0': {
            'slappart0.conf': {'slappart0', 'slappart0_a'},
            'slappart0-x.conf': {'slappart0-x', 'slappart0-y'},
        },
        'slappart1': {'slappart1.conf': {'slappart1'}},
    }
    assert sorted(reads) == [
        'slappart0-x.conf',
        'slappart0.conf',
        'slappart1.conf',
    ]
    del reads[:]
    assert declarations.of_all()['slappart1'] == {
        'slappart1.conf': {'slappart1'}
    }
    assert declarations.of_files(['slappart0.conf', 'slappart0-x.conf']) == {
        'slappart0.conf': {'slappart0', 'slappart0_a'},
        'slappart0-x.conf': {'slappart0-x', 'slappart0-y'},
    }
    assert reads == []
    atomic_write(tmp_path / 'slappart1.conf', '[program:slappart1_b]\n')
    (tmp_path / 'slappart0-x.conf').unlink()
    assert declarations.of_all() == {
        'slappart0': {'slappart0.conf': {'slappart0', 'slappart0_a'}},
        'slappart1': {'slappart1.conf': {'slappart1', 'slappart1_b'}},
    }
    assert reads == ['slappart1.conf']


def test_declarations_read_again_a_file_changed_too_close_to_its_read(
    tmp_path, monkeypatch
):
    """A write in the same tick of the filesystem's clock as the read,
    after it, leaves the stamp as it was: such a read is not kept."""
    conf = tmp_path / 'slappart0.conf'
    conf.write_text('[program:slappart0_a]\n')
    declarations = names_cache.Declarations(str(tmp_path))
    reads = count_reads(monkeypatch)
    now = {'ns': conf.stat().st_ctime_ns}
    monkeypatch.setattr(names_cache.time, 'time_ns', lambda: now['ns'])
    for _ in range(2):  # changed within the granularity: read each time
        declarations.of_file('slappart0.conf')
    assert reads == ['slappart0.conf'] * 2
    now['ns'] += names_cache.TIMESTAMP_GRANULARITY_NS + 1
    for _ in range(2):  # read once long enough after: kept
        declarations.of_file('slappart0.conf')
    assert reads == ['slappart0.conf'] * 3


def test_declarations_of_the_node_are_its_main_config_and_node_files(tmp_path):
    include_dir = tmp_path / 'conf.d'
    other = tmp_path / 'other'
    include_dir.mkdir()
    other.mkdir()
    (include_dir / 'slappart0.conf').write_text('[program:slappart0_a]\n')
    (include_dir / 'firewall.conf').write_text('[program:firewall]\n')
    (include_dir / 'supervisor_slapos.conf').write_text(
        '[eventlistener:slapos]\n'
    )
    (other / 'slappart0.conf').write_text('[program:slappart0-elsewhere]\n')
    main = tmp_path / 'supervisord.conf'
    main.write_text(
        '[supervisord]\n[program:slappart0-main]\n'
        '[include]\nfiles = conf.d/*.conf other/*.conf\n'
    )
    node = nodeconfig.NodeConfig(
        str(main), {}, str(include_dir), Ownership(frozenset({'firewall'}))
    )
    assert node.names() == {
        'slappart0-main',
        'firewall',
        'slapos',
        'slappart0-elsewhere',
    }
