"""The plugin writes the files slapgrid writes, byte for byte.

The same partition is turned into supervisord include files twice: by
slapos.core's own code (``slapos.grid.SlapObject.Partition``, its
``updateSupervisor`` stubbed out) and by the plugin
(``partitionconf.generate_partition_conf``; manager files go through
``writeGroupConfig`` unchanged). ``P.conf`` must be the same bytes; the
only differences left are in which entries become programs (README,
"Drop-in compatibility with slapgrid").

``slapos.grid.SlapObject`` (slapos.core 1.26.1) imports on Python 3.12
and later only; the ``slapgrid`` cases are skipped elsewhere, and the
``templates`` cases run everywhere with slapgrid's own template files
(see tests/slapgrid.py).
"""

import configparser
import os
import stat

import pytest
from supervisor.options import ServerOptions

from supervisor_slapos import groupapply
from supervisor_slapos.partitionconf import generate_partition_conf
from supervisor_slapos.partitionparse import (
    parse_partition,
    read_partition_files,
)
from testbed import stacks
from testbed.node import SLEEPER
from testbed.views import files_view
from tests import slapgrid

PID = 'slappart3'
PARTITION_CLASS, NO_SLAPGRID = slapgrid.import_partition_class()

needs_slapgrid = pytest.mark.skipif(
    PARTITION_CLASS is None,
    reason=f'needs slapos.grid.SlapObject: {NO_SLAPGRID}; run this test '
    f'under Python 3.12+ (make test picks python3.12 when present)',
)
needs_templates = pytest.mark.skipif(
    slapgrid.templates_dir() is None,
    reason='needs slapos.core (slapgrid templates) installed',
)

IMPLEMENTATIONS = [
    pytest.param('slapgrid', marks=needs_slapgrid),
    pytest.param('templates', marks=needs_templates),
    # the slapgrid of the run's stack (testbed/stacks.py), in its Python:
    # slapos.core 1.22.1 on Python 3.9 with SUPERVISOR_SLAPOS_STACK=node39
    pytest.param('stack', marks=pytest.mark.real_slapgrid),
]


def write_script(path, body=SLEEPER, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(mode)


@pytest.fixture
def instance(tmp_path):
    """A partition with etc/run, etc/service and etc/prerm entries."""
    root = tmp_path / 'instance'
    partition = root / PID
    for name in ('apache', 'cron', 'zope-1'):
        write_script(partition / 'etc' / 'run' / name)
    for name in ('monitor', 'haproxy'):
        write_script(partition / 'etc' / 'service' / name)
    write_script(partition / 'etc' / 'prerm' / 'cleanup')
    return root


def slapgrid_files(implementation, instance_root, directory, managers=True):
    """Run slapgrid's code on ``instance_root/PID``; {basename: text}."""
    directory.mkdir(exist_ok=True)
    partition_dir = instance_root / PID
    if implementation == 'stack':
        slapgrid.stack_write_files(
            stacks.require_slapgrid(), partition_dir, directory, PID, managers
        )
    else:
        if implementation == 'slapgrid':
            partition = slapgrid.make_partition(partition_dir, directory, PID)
        else:
            partition = slapgrid.TemplatePartition(
                partition_dir, directory, PID
            )
        slapgrid.write_files(partition, managers)
    return {
        name: (directory / name).read_text()
        for name in sorted(os.listdir(directory))
    }


def plugin_files(instance_root, directory, slapgrid_texts):
    """The plugin's P.conf, plus slapgrid's manager files as they are
    (the plugin writes a manager's text as given: writeGroupConfig)."""
    directory.mkdir(exist_ok=True)
    texts = {
        name: text
        for name, text in slapgrid_texts.items()
        if name != f'{PID}.conf'
    }
    texts[f'{PID}.conf'] = generate_partition_conf(str(instance_root), PID)
    for name, text in texts.items():
        (directory / name).write_text(text)
    return dict(sorted(texts.items()))


def sections(text):
    parser = configparser.RawConfigParser(strict=True)
    parser.optionxform = str
    parser.read_string(text)
    return {name: dict(parser.items(name)) for name in parser.sections()}


def load(tmp_path, include_dir):
    """ServerOptions after reading a main config including ``include_dir``,
    as supervisord does at start."""
    main = tmp_path / f'{include_dir.name}-supervisord.conf'
    main.write_text(
        f'[supervisord]\nlogfile = {tmp_path}/unused.log\n'
        f'[include]\nfiles = {include_dir}/*.conf\n'
    )
    options = ServerOptions()
    options.configfile = str(main)
    options.process_config(do_usage=False)
    return options


# the files, byte for byte

OWNERS = [
    pytest.param(None, id='own-user'),
    pytest.param(
        65534,
        id='other-user',
        marks=pytest.mark.skipif(
            os.geteuid() != 0, reason='needs root to chown'
        ),
    ),
]


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
@pytest.mark.parametrize('uid', OWNERS)
def test_p_conf_is_slapgrid_s_byte_for_byte(
    tmp_path, instance, implementation, uid
):
    """etc/run then etc/service entries, sorted; user=/group= of the
    partition directory's owner and its passwd name and home, always."""
    if uid is not None:
        os.chown(instance / PID, uid, uid)
    theirs = slapgrid_files(implementation, instance, tmp_path / 'slapgrid')
    ours = plugin_files(instance, tmp_path / 'plugin', theirs)
    assert (
        list(theirs)
        == list(ours)
        == [f'{PID}-prerm.conf', f'{PID}-socat.conf', f'{PID}.conf']
    )
    assert ours[f'{PID}.conf'] == theirs[f'{PID}.conf']
    assert ours == theirs
    assert list(sections(ours[f'{PID}.conf'])) == [
        f'group:{PID}',
        f'program:{PID}_apache',
        f'program:{PID}_cron',
        f'program:{PID}_zope-1',
        f'program:{PID}_haproxy',
        f'program:{PID}_monitor',
    ]
    assert f'user={(instance / PID).stat().st_uid}\n' in ours[f'{PID}.conf']


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_slapgrid_manager_files_are_valid_partition_files(
    tmp_path, instance, implementation
):
    """The plugin accepts slapgrid's manager files (prerm, portredir) as
    files of the partition, and builds the same groups from them as a
    full read of the configuration."""
    texts = slapgrid_files(implementation, instance, tmp_path / 'slapgrid')
    options = load(tmp_path, tmp_path / 'slapgrid')
    view = files_view(tmp_path / 'slapgrid', PID)
    parsed = parse_partition(options, view, read_partition_files(view))
    full = {g.name: g for g in options.process_group_configs}
    assert {g.name: g for g in parsed.groups} == full
    assert set(texts) == set(view.files)


# etc/run entries


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_slapgrid_lists_every_entry_the_plugin_only_safe_executables(
    tmp_path, implementation
):
    root = tmp_path / 'instance'
    run = root / PID / 'etc' / 'run'
    write_script(run / 'good')
    write_script(run / '.hidden')
    write_script(run / 'not-executable', mode=0o644)
    write_script(run / 'semi;colon')
    (run / 'a-directory').mkdir()
    write_script(run / 'two words')
    texts = slapgrid_files(
        implementation, root, tmp_path / 'slapgrid', managers=False
    )
    theirs = sections(texts[f'{PID}.conf'])
    ours = sections(generate_partition_conf(str(root), PID))
    assert sorted(theirs) == [f'group:{PID}'] + [
        f'program:{PID}_{name}'
        for name in (
            '.hidden',
            'a-directory',
            'good',
            'not-executable',
            'semi;colon',
            'two words',
        )
    ]
    assert sorted(ours) == [
        f'group:{PID}',
        f'program:{PID}_.hidden',
        f'program:{PID}_good',
    ]
    # One bad name and supervisor refuses slapgrid's file, and with it the
    # whole configuration (supervisord does not start, reloadConfig fails).
    with pytest.raises(ValueError, match='Invalid name'):
        load(tmp_path, tmp_path / 'slapgrid')


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_empty_partition_slapgrid_writes_no_file_the_plugin_a_marker(
    tmp_path, implementation
):
    root = tmp_path / 'instance'
    (root / PID / 'etc' / 'run').mkdir(parents=True)
    assert (
        slapgrid_files(implementation, root, tmp_path / 's', managers=False)
        == {}
    )
    text = generate_partition_conf(str(root), PID)
    assert sections(text) == {}
    assert text.startswith(';')


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_same_name_in_run_and_service_slapgrid_keeps_the_service(
    tmp_path, implementation
):
    root = tmp_path / 'instance'
    write_script(root / PID / 'etc' / 'run' / 'x')
    write_script(root / PID / 'etc' / 'run' / 'y')
    write_script(root / PID / 'etc' / 'service' / 'x')
    theirs = sections(
        slapgrid_files(implementation, root, tmp_path / 's', managers=False)[
            f'{PID}.conf'
        ]
    )
    assert theirs[f'group:{PID}']['programs'] == f'{PID}_x,{PID}_y'
    assert theirs[f'program:{PID}_x']['process_name'] == 'x-on-watch'
    assert (
        generate_partition_conf(str(root), PID)
        == slapgrid_files(
            implementation, root, tmp_path / 't', managers=False
        )[f'{PID}.conf']
    )


# the files themselves


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_same_file_modes_as_slapgrid(tmp_path, implementation, make_node):
    """slapgrid writes its include files 0600 (``updateFile``): they name
    every partition's commands and users, and only root reads them."""
    node = make_node()
    node.make_partition(PID, run=['apache'])
    texts = slapgrid_files(
        implementation,
        node.instance_root,
        tmp_path / 'slapgrid',
        managers=False,
    )
    modes = {
        stat.S_IMODE((tmp_path / 'slapgrid' / name).stat().st_mode)
        for name in texts
    }
    assert modes == {0o600}
    node.start()
    assert node.rpc.slapos.startPartition(PID) is True
    assert node.rpc.slapos.writeGroupConfig(PID, 'x', '') == [[], [], []]
    for name in (f'{PID}.conf', f'{PID}-x.conf'):
        assert stat.S_IMODE(node.include_file(name).stat().st_mode) == 0o600


def test_template_partition_writes_what_slapgrid_writes(tmp_path, instance):
    """tests/slapgrid.py's stand-in is faithful (where both can run)."""
    if PARTITION_CLASS is None:
        pytest.skip(f'needs slapos.grid.SlapObject: {NO_SLAPGRID}')
    real = slapgrid_files('slapgrid', instance, tmp_path / 'real')
    copy = slapgrid_files('templates', instance, tmp_path / 'copy')
    assert real == copy


# on a real node


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_node_writes_slapgrid_manager_text_verbatim(
    tmp_path, implementation, make_node
):
    node = make_node()
    partition = node.make_partition(PID, run=['apache'])
    write_script(partition / 'etc' / 'prerm' / 'cleanup')
    texts = slapgrid_files(
        implementation, node.instance_root, tmp_path / 'slapgrid'
    )
    node.start()
    rpc = node.rpc
    assert rpc.slapos.startPartition(PID) is True
    for suffix in ('prerm', 'socat'):
        name = f'{PID}-{suffix}.conf'
        assert rpc.slapos.writeGroupConfig(PID, suffix, texts[name]) == [
            [f'{PID}-{suffix}'],
            [],
            [],
        ]
        assert node.include_file(name).read_text() == texts[name]
    assert rpc.supervisor.reloadConfig() == [[[], [], []]]
    assert node.include_file(f'{PID}.conf').read_text() == texts[f'{PID}.conf']


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_plugin_takes_slapgrid_groups_without_restart(
    tmp_path, instance, implementation
):
    """The plugin's P.conf over slapgrid's loaded groups is no change."""
    slapgrid_texts = slapgrid_files(
        implementation, instance, tmp_path / 'slapgrid'
    )
    plugin_files(instance, tmp_path / 'plugin', slapgrid_texts)
    loaded = {
        g.name: g
        for g in load(tmp_path, tmp_path / 'slapgrid').process_group_configs
    }
    options = load(tmp_path, tmp_path / 'plugin')
    view = files_view(tmp_path / 'plugin', PID)
    parsed = parse_partition(options, view, read_partition_files(view))
    assert groupapply.diff(loaded, parsed).as_list() == [[], [], []]
