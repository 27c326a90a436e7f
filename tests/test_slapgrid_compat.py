"""The plugin writes the files slapgrid writes.

The same partition is turned into supervisord include files twice: by
slapos.core's own code (``slapos.grid.SlapObject.Partition``, its
``updateSupervisor`` stubbed out) and by the plugin
(``partitionconf.generate_partition_conf``; manager files go through
``writeGroupConfig`` unchanged). The two are compared section by section,
option by option, and as supervisor parses them (``ProcessConfig``
attributes). Every difference left is listed in ``DOCUMENTED`` and in
docs/compat.rst, with its reason.

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

from supervisor_slapos.partitionconf import generate_partition_conf
from supervisor_slapos import scopedapply
from supervisor_slapos.scopedapply import parse_partition, read_partition_files
from tests import slapgrid
from tests.node import SLEEPER

PID = 'slappart3'
PARTITION_CLASS, NO_SLAPGRID = slapgrid.import_partition_class()

needs_slapgrid = pytest.mark.skipif(
    PARTITION_CLASS is None,
    reason=f'needs slapos.grid.SlapObject: {NO_SLAPGRID}; run this test '
           f'under Python 3.12+ (make test picks python3.12 when present)')
needs_templates = pytest.mark.skipif(
    slapgrid.templates_dir() is None,
    reason='needs slapos.core (slapgrid templates) installed')

IMPLEMENTATIONS = [
    pytest.param('slapgrid', marks=needs_slapgrid),
    pytest.param('templates', marks=needs_templates),
]

# Options slapgrid writes in every [program:...] and the plugin does not:
# supervisor ignores them (redirect_stderr=true) and warns at every read.
STDERR_KEYS = {'stderr_logfile', 'stderr_logfile_maxbytes',
               'stderr_logfile_backups'}
# Options slapgrid writes always, the plugin only when supervisord is root.
OWNER_KEYS = {'user', 'group', 'environment'}

# The same differences, as supervisor parses them (ProcessConfig).
PARSED_STDERR = {'stderr_logfile_maxbytes', 'stderr_logfile_backups'}
PARSED_OWNER = {'uid', 'environment'}

DOCUMENTED = {
    'stderr options': STDERR_KEYS,
    'owner options when not root': OWNER_KEYS,
}


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
    if implementation == 'slapgrid':
        partition = slapgrid.make_partition(partition_dir, directory, PID)
    else:
        partition = slapgrid.TemplatePartition(partition_dir, directory, PID)
    partition.generateSupervisorConfiguration()
    if managers:
        # slapos.manager.prerm and slapos.manager.portredir
        partition.addServicesToCustomGroup(
            'prerm', ['cleanup'], str(partition_dir / 'etc' / 'prerm'))
        partition.addProgramToGroup(
            'socat', 'socat-tcp-80', 'socat-tcp-80',
            'socat TCP6-LISTEN:80,fork TCP4:10.0.0.2:80', as_user=False)
    partition.writeSupervisorConfigurationFiles()
    return {name: (directory / name).read_text()
            for name in sorted(os.listdir(directory))}


def plugin_files(instance_root, directory, slapgrid_texts, as_root):
    """The plugin's P.conf, plus slapgrid's manager files as they are
    (the plugin writes a manager's text as given: writeGroupConfig)."""
    directory.mkdir(exist_ok=True)
    texts = {name: text for name, text in slapgrid_texts.items()
             if name != f'{PID}.conf'}
    texts[f'{PID}.conf'] = generate_partition_conf(
        str(instance_root), PID, as_root=as_root)
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
    main.write_text(f'[supervisord]\nlogfile = {tmp_path}/unused.log\n'
                    f'[include]\nfiles = {include_dir}/*.conf\n')
    options = ServerOptions()
    options.configfile = str(main)
    options.process_config(do_usage=False)
    return options


def process_attributes(config):
    return {k: v for k, v in vars(config).items() if k != 'options'}


# the files, section by section

@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
@pytest.mark.parametrize('as_root', [True, False], ids=['root', 'user'])
def test_same_sections_and_options_as_slapgrid(tmp_path, instance,
                                               implementation, as_root):
    theirs = slapgrid_files(implementation, instance, tmp_path / 'slapgrid')
    ours = plugin_files(instance, tmp_path / 'plugin', theirs, as_root)
    assert list(theirs) == list(ours) == [
        f'{PID}-prerm.conf', f'{PID}-socat.conf', f'{PID}.conf']

    their_sections = sections(theirs[f'{PID}.conf'])
    our_sections = sections(ours[f'{PID}.conf'])
    # same sections, in the same order
    assert list(their_sections) == list(our_sections) == [
        f'group:{PID}',
        f'program:{PID}_apache', f'program:{PID}_cron',
        f'program:{PID}_zope-1',
        f'program:{PID}_haproxy', f'program:{PID}_monitor']
    assert their_sections[f'group:{PID}'] == our_sections[f'group:{PID}']

    expected_missing = STDERR_KEYS | (set() if as_root else OWNER_KEYS)
    for name, theirs_options in their_sections.items():
        if name.startswith('group:'):
            continue
        our_options = our_sections[name]
        assert set(theirs_options) - set(our_options) == expected_missing
        assert set(our_options) - set(theirs_options) == set()
        for key, value in our_options.items():
            assert value == theirs_options[key], (name, key)
    # in the same order (but for environment=, which the plugin writes
    # after group=, slapgrid last): the text differs only by these lines
    def lines(text, left_out):
        return [line for line in text.splitlines()
                if line.split('=', 1)[0] not in left_out]
    assert (lines(theirs[f'{PID}.conf'], expected_missing | {'environment'})
            == lines(ours[f'{PID}.conf'], {'environment'}))


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
@pytest.mark.parametrize('as_root', [True, False], ids=['root', 'user'])
def test_same_process_configs_as_slapgrid(tmp_path, instance, implementation,
                                          as_root):
    slapgrid_texts = slapgrid_files(implementation, instance,
                                    tmp_path / 'slapgrid')
    plugin_files(instance, tmp_path / 'plugin', slapgrid_texts, as_root)
    theirs = load(tmp_path, tmp_path / 'slapgrid')
    ours = load(tmp_path, tmp_path / 'plugin')

    their_groups = {g.name: g for g in theirs.process_group_configs}
    our_groups = {g.name: g for g in ours.process_group_configs}
    assert sorted(their_groups) == sorted(our_groups) == [
        PID, f'{PID}-prerm', f'{PID}-socat']
    expected = PARSED_STDERR | (set() if as_root else PARSED_OWNER)
    for name, their_group in their_groups.items():
        our_group = our_groups[name]
        assert our_group.priority == their_group.priority
        assert ([p.name for p in our_group.process_configs]
                == [p.name for p in their_group.process_configs])
        for their_process, our_process in zip(their_group.process_configs,
                                              our_group.process_configs):
            a = process_attributes(their_process)
            b = process_attributes(our_process)
            different = {k for k in a if a[k] != b[k]}
            if name == PID:
                assert different == expected, their_process.name
                # what is different has no effect: no stderr log file
                assert a['stderr_logfile'] is b['stderr_logfile'] is None
            else:  # manager files: slapgrid's text, as it is
                assert different == set()
    assert [p.name for p in our_groups[PID].process_configs] == [
        'apache', 'cron', 'zope-1', 'haproxy-on-watch', 'monitor-on-watch']
    # supervisor warns about each of slapgrid's programs, at every read
    assert len(theirs.parse_warnings) == 5 + 2
    assert all('redirect_stderr=true but stderr_logfile' in w
               for w in theirs.parse_warnings)
    assert len(ours.parse_warnings) == 2  # the manager files' programs


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_slapgrid_manager_files_are_valid_partition_files(
        tmp_path, instance, implementation):
    """The plugin accepts slapgrid's manager files (prerm, portredir) as
    files of the partition, and builds the same groups from them as a
    full read of the configuration."""
    texts = slapgrid_files(implementation, instance, tmp_path / 'slapgrid')
    options = load(tmp_path, tmp_path / 'slapgrid')
    parsed = parse_partition(
        options, str(tmp_path / 'slapgrid'), PID,
        read_partition_files(str(tmp_path / 'slapgrid'), PID))
    assert parsed.groups_by_file == {
        f'{PID}-prerm.conf': (f'{PID}-prerm',),
        f'{PID}-socat.conf': (f'{PID}-socat',),
        f'{PID}.conf': (PID,)}
    full = {g.name: g for g in options.process_group_configs}
    assert {g.name: g for g in parsed.groups} == full
    assert set(texts) == set(parsed.groups_by_file)


# etc/run entries

@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_slapgrid_lists_every_entry_the_plugin_only_safe_executables(
        tmp_path, implementation):
    root = tmp_path / 'instance'
    run = root / PID / 'etc' / 'run'
    write_script(run / 'good')
    write_script(run / '.hidden')
    write_script(run / 'not-executable', mode=0o644)
    write_script(run / 'semi;colon')
    (run / 'a-directory').mkdir()
    write_script(run / 'two words')
    texts = slapgrid_files(implementation, root, tmp_path / 'slapgrid',
                           managers=False)
    theirs = sections(texts[f'{PID}.conf'])
    ours = sections(generate_partition_conf(str(root), PID, as_root=True))
    assert sorted(theirs) == [f'group:{PID}'] + [
        f'program:{PID}_{name}' for name in (
            '.hidden', 'a-directory', 'good', 'not-executable',
            'semi;colon', 'two words')]
    assert sorted(ours) == [f'group:{PID}', f'program:{PID}_.hidden',
                            f'program:{PID}_good']
    # One bad name and supervisor refuses slapgrid's file, and with it the
    # whole configuration (supervisord does not start, reloadConfig fails).
    with pytest.raises(ValueError, match='Invalid name'):
        load(tmp_path, tmp_path / 'slapgrid')


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_empty_partition_slapgrid_writes_no_file_the_plugin_a_marker(
        tmp_path, implementation):
    root = tmp_path / 'instance'
    (root / PID / 'etc' / 'run').mkdir(parents=True)
    assert slapgrid_files(implementation, root, tmp_path / 's',
                          managers=False) == {}
    text = generate_partition_conf(str(root), PID, as_root=True)
    assert sections(text) == {}
    assert text.startswith(';')


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_same_name_in_run_and_service_slapgrid_keeps_the_service(
        tmp_path, implementation):
    root = tmp_path / 'instance'
    write_script(root / PID / 'etc' / 'run' / 'x')
    write_script(root / PID / 'etc' / 'run' / 'y')
    write_script(root / PID / 'etc' / 'service' / 'x')
    theirs = sections(slapgrid_files(implementation, root, tmp_path / 's',
                                     managers=False)[f'{PID}.conf'])
    assert theirs[f'group:{PID}']['programs'] == f'{PID}_x,{PID}_y'
    assert theirs[f'program:{PID}_x']['process_name'] == 'x-on-watch'
    ours = sections(generate_partition_conf(str(root), PID, as_root=True))
    assert ours == {name: {k: v for k, v in options.items()
                           if k not in STDERR_KEYS}
                    for name, options in theirs.items()}


# the files themselves

@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
def test_same_file_modes_as_slapgrid(tmp_path, implementation, make_node):
    """slapgrid writes its include files 0600 (``updateFile``): they name
    every partition's commands and users, and only root reads them."""
    node = make_node()
    node.make_partition(PID, run=['apache'])
    texts = slapgrid_files(implementation, node.instance_root,
                           tmp_path / 'slapgrid', managers=False)
    modes = {stat.S_IMODE((tmp_path / 'slapgrid' / name).stat().st_mode)
             for name in texts}
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
def test_node_writes_slapgrid_manager_text_verbatim(tmp_path, implementation,
                                                    make_node):
    node = make_node()
    partition = node.make_partition(PID, run=['apache'])
    write_script(partition / 'etc' / 'prerm' / 'cleanup')
    texts = slapgrid_files(implementation, node.instance_root,
                           tmp_path / 'slapgrid')
    node.start()
    rpc = node.rpc
    assert rpc.slapos.startPartition(PID) is True
    for suffix in ('prerm', 'socat'):
        name = f'{PID}-{suffix}.conf'
        assert rpc.slapos.writeGroupConfig(PID, suffix, texts[name]) == [
            [f'{PID}-{suffix}'], [], []]
        assert node.include_file(name).read_text() == texts[name]
    assert rpc.supervisor.reloadConfig() == [[[], [], []]]
    ours = sections(node.include_file(f'{PID}.conf').read_text())
    theirs = sections(texts[f'{PID}.conf'])
    root = os.geteuid() == 0
    expected_missing = STDERR_KEYS | (set() if root else OWNER_KEYS)
    assert ours == {name: {k: v for k, v in options.items()
                           if k not in expected_missing}
                    for name, options in theirs.items()}


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
@pytest.mark.parametrize('as_root', [True, False], ids=['root', 'user'])
def test_plugin_takes_slapgrid_groups_without_restart(
        tmp_path, instance, implementation, as_root):
    """Applying the plugin's P.conf over slapgrid's loaded groups changes
    nothing that needs a restart (as root: slapgrid's stderr options are
    unused; as a user, the missing user=/environment= are a real change)."""
    slapgrid_texts = slapgrid_files(implementation, instance,
                                    tmp_path / 'slapgrid')
    plugin_files(instance, tmp_path / 'plugin', slapgrid_texts, as_root)
    loaded = {g.name: g for g in load(tmp_path, tmp_path / 'slapgrid')
              .process_group_configs}
    options = load(tmp_path, tmp_path / 'plugin')
    parsed = parse_partition(
        options, str(tmp_path / 'plugin'), PID,
        read_partition_files(str(tmp_path / 'plugin'), PID))
    changes = scopedapply.diff(loaded, parsed)
    assert changes.as_list() == [[], [] if as_root else [PID], []]
    assert changes.refreshed == ((PID,) if as_root else ())
