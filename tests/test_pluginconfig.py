"""The [rpcinterface:slapos] options, and what they are checked against
in supervisord's configuration (unit tests; tests/test_node_files.py runs
them on real supervisords)."""

import pytest

from supervisor_slapos import pluginconfig


def write_main(tmp_path, include='conf.d/*.conf', extra=''):
    main = tmp_path / 'supervisord.conf'
    main.write_text(f'[supervisord]\n{extra}[include]\nfiles = {include}\n')
    return main


def parse(main, **config):
    config.setdefault('instance_root', 'instance')
    config.setdefault('include_dir', 'conf.d')
    return pluginconfig.parse_options(config, str(main))


def test_node_files_ids(tmp_path):
    (tmp_path / 'conf.d').mkdir()
    main = write_main(tmp_path)
    assert parse(main).ownership.node_ids == {'firewall', 'dbus'}
    assert parse(main, node_files='cron').ownership.node_ids == {'cron'}


def test_relative_paths_are_resolved_against_the_config_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir('/')
    main = write_main(tmp_path)
    options = parse(main, state_dir='var/../state')
    assert options.instance_root == str(tmp_path / 'instance')
    assert options.include_dir == str(tmp_path / 'conf.d')
    assert options.state_dir == str(tmp_path / 'state')
    assert parse(main).state_dir == str(tmp_path)


def test_absolute_include_pattern_is_accepted(tmp_path):
    main = write_main(tmp_path, f'{tmp_path}/conf.d/*.conf')
    assert parse(main).include_dir == str(tmp_path / 'conf.d')


@pytest.mark.parametrize('include', ['elsewhere/*.conf', '*.conf'])
def test_include_dir_that_no_include_reads_is_refused(tmp_path, include):
    main = write_main(tmp_path, include)
    with pytest.raises(ValueError) as info:
        parse(main)
    assert str(tmp_path / 'conf.d') in str(info.value)
    assert str(main) in str(info.value)


def test_config_without_include_is_refused(tmp_path):
    main = tmp_path / 'supervisord.conf'
    main.write_text('[supervisord]\n')
    with pytest.raises(ValueError, match='patterns: none'):
        parse(main)


@pytest.mark.parametrize(
    'value, ids',
    [('', set()), ('firewall', {'firewall'}), (' a\tb\nc ', {'a', 'b', 'c'})],
)
def test_node_files_option(tmp_path, value, ids):
    assert (
        parse(write_main(tmp_path), node_files=value).ownership.node_ids == ids
    )


@pytest.mark.parametrize('value', ['fire-wall', 'dbus ../x', 'x' * 65])
def test_node_files_must_be_partition_ids(tmp_path, value):
    with pytest.raises(ValueError, match='node_files') as info:
        parse(write_main(tmp_path), node_files=value)
    assert repr(value.split()[-1]) in str(info.value)


BOOLEAN_OPTIONS = ['linear_reread', 'incremental_reread', 'instant_start']


@pytest.mark.parametrize('name', BOOLEAN_OPTIONS)
@pytest.mark.parametrize(
    'value, expected',
    [('true', True), ('false', False), ('no', False), ('1', True)],
)
def test_boolean_options(tmp_path, name, value, expected):
    options = parse(write_main(tmp_path), **{name: value})
    assert getattr(options, name) is expected


@pytest.mark.parametrize('name', BOOLEAN_OPTIONS)
def test_boolean_options_default_to_true(tmp_path, name):
    assert getattr(parse(write_main(tmp_path)), name) is True


@pytest.mark.parametrize('name', BOOLEAN_OPTIONS)
def test_boolean_option_refuses_a_non_boolean_naming_it(tmp_path, name):
    with pytest.raises(ValueError, match=f'{name}.*maybe'):
        parse(write_main(tmp_path), **{name: 'maybe'})


@pytest.mark.parametrize('missing', ['instance_root', 'include_dir'])
def test_required_options(tmp_path, missing):
    config = {'instance_root': 'i', 'include_dir': 'conf.d'}
    del config[missing]
    with pytest.raises(ValueError, match=missing):
        pluginconfig.parse_options(config, str(write_main(tmp_path)))


# on a real supervisord


def edit_config(node, replacements):
    text = node.config.read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    node.config.write_text(text)


def test_relative_paths_on_a_real_supervisord(make_node, monkeypatch):
    """supervisord started in / (as systemd does) with relative paths:
    P.conf lands where [include] reads it, so a restart loads it."""
    monkeypatch.chdir('/')
    node = make_node(rpc_options='state_dir = ../var/slapos\n')
    edit_config(
        node,
        {
            f'instance_root = {node.instance_root}': (
                'instance_root = ../instance'
            ),
            f'include_dir = {node.include_dir}': (
                'include_dir = supervisord.conf.d'
            ),
            f'files = {node.include_dir}/*.conf': (
                'files = supervisord.conf.d/*.conf'
            ),
        },
    )
    node.make_partition('slappart0', run=['a'])
    node.start()
    assert node.rpc.slapos.getStateDir() == str(node.root / 'var' / 'slapos')
    assert node.rpc.slapos.startPartition('slappart0') is True
    assert node.include_file('slappart0.conf').exists()
    node.shutdown()
    node.start()
    assert set(node.processes('slappart0')) == {'a'}
    assert node.rpc.slapos.getPartitionInfo('slappart0')['state'] == 'started'


def test_include_dir_that_supervisord_never_reads_stops_it(make_node):
    node = make_node()
    elsewhere = node.root / 'etc' / 'partitions'
    state_dir = node.root / 'state'
    edit_config(
        node,
        {
            f'include_dir = {node.include_dir}': (
                f'include_dir = {elsewhere}\nstate_dir = {state_dir}'
            )
        },
    )
    node.start(wait=False)
    assert node.process.wait(timeout=60) != 0
    assert (
        'Could not make slapos rpc interface'
        in node.process.stderr.read().decode()
    )
    log = node.log_tail()
    assert (
        f"CRIT slapos: not loaded: [rpcinterface:slapos] include_dir "
        f"'{elsewhere}' is not the directory of an "
        f"[include] files pattern of '{node.config}'" in log
    )
    assert f'{node.include_dir}/*.conf' in log
    assert not elsewhere.exists() and not state_dir.exists()
