"""Hostile RPC input: refused calls change nothing, no call writes outside.

Property-based (hypothesis, derandomized, bounded) over partition ids,
suffixes and group texts, against one real supervisord shared by the whole
module. After every call:

- a refused call (fault INVALID_NAME, NO_PARTITION or BAD_CONFIG) leaves
  the include directory and the state directory byte for byte unchanged,
  and no group or process changed;
- no call, refused or not, writes anything outside the include directory
  and the state directory: the whole temporary tree (the node's files,
  the partitions, and an ``outside`` directory that path tricks aim at)
  is compared before and after.

Examples per property: ``SUPERVISOR_SLAPOS_HOSTILE_EXAMPLES`` (default
sized for CI).
"""

import hashlib
import http.client
import os
import shutil
import socket
import xmlrpc.client

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor_slapos import naming, ownership
from supervisor_slapos.faults import Faults
from testbed.node import SupervisorNode

EXAMPLES = int(os.environ.get('SUPERVISOR_SLAPOS_HOSTILE_EXAMPLES', '60'))
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

INVALID_NAME, NO_PARTITION, BAD_CONFIG = (
    Faults.INVALID_NAME,
    Faults.NO_PARTITION,
    Faults.BAD_CONFIG,
)
SLEEP = shutil.which('sleep')
# Partitions of the shared node. slappart1 and slappart10 test ownership
# by prefix; slappart9 has a program in the main configuration.
STARTED = ('slappart0', 'slappart1', 'slappart10')
MAIN_PROGRAM = 'slappart9-main'
EXTRA = f"""
[program:{MAIN_PROGRAM}]
command = {SLEEP} 3600
startsecs = 0
"""
# Files that change on their own while supervisord runs.
VOLATILE = ('supervisord.log', 's.sock', 'listener.log')


# the shared node and its snapshots


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp('hostile')
    outside = base / 'outside'
    outside.mkdir()
    (outside / 'secret').write_text('keep me\n')
    root = base / 'node'
    state_dir = root / 'state'
    node = SupervisorNode(
        root, extra=EXTRA, rpc_options=f'state_dir = {state_dir}\n'
    )
    for pid in STARTED:
        node.make_partition(pid, run=['r0'], service=['w'])
    node.start()
    for pid in STARTED:
        node.rpc.slapos.startPartition(pid)
    node.rpc.slapos.writeGroupConfig(
        'slappart0',
        'keep',
        (f'[program:slappart0-keep]\ncommand={SLEEP} 3600\nstartsecs=0\n'),
    )
    for group in (*STARTED, 'slappart0-keep'):
        node.wait_execed(group)
    yield Hostile(base, outside, node, state_dir)
    node.cleanup()


class Hostile:
    def __init__(self, base, outside, node, state_dir):
        self.base = base
        self.outside = outside
        self.node = node
        self.state_dir = state_dir
        self.owned = (node.include_dir, state_dir)

    @property
    def slapos(self):
        return self.node.rpc.slapos

    def tree(self):
        """{relative path: what identifies its content} of the whole tree,
        volatile files aside."""
        snapshot = {}
        for directory, dirs, files in os.walk(self.base):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, self.base)
                if name in VOLATILE or relative.startswith(
                    os.path.join('node', 'log') + os.sep
                ):
                    continue
                st = os.lstat(path)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, 'rb') as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                    snapshot[relative] = (
                        'file',
                        st.st_mode,
                        st.st_ino,
                        st.st_mtime_ns,
                        digest,
                    )
                else:
                    snapshot[relative] = (
                        'other',
                        st.st_mode,
                        os.path.islink(path) and os.readlink(path),
                    )
        return snapshot

    def outside_owned(self, tree):
        owned = [os.path.relpath(d, self.base) + os.sep for d in self.owned]
        return {
            path: value
            for path, value in tree.items()
            if not any((path + os.sep).startswith(o) for o in owned)
        }

    def processes(self):
        return self.node.process_table()

    def state(self):
        return self.tree(), self.processes()

    def call(self, method, *args):
        """Call ``slapos.method``; return the result, or the Fault."""
        try:
            return getattr(self.slapos, method)(*args)
        except xmlrpc.client.Fault as fault:
            return fault

    def assert_refused(self, codes, method, *args):
        """The call is refused with one of ``codes`` and changes nothing."""
        before = self.state()
        result = self.call(method, *args)
        assert isinstance(result, xmlrpc.client.Fault), (method, args, result)
        assert result.faultCode in codes, (method, args, result)
        assert self.state() == before, (method, args)
        return result

    def assert_writes_nothing_outside(self, before_tree):
        after_tree = self.tree()
        assert self.outside_owned(after_tree) == self.outside_owned(
            before_tree
        )


# partition ids

TRICKY_IDS = [
    '',
    '.',
    '..',
    '../slappart0',
    'slappart0/..',
    '/etc/passwd',
    'slappart0/../slappart1',
    'slappart0.conf',
    'slappart0-x',
    'slappart0_x',
    ' slappart0',
    'slappart0 ',
    'slappart0\n',
    '\tslappart0',
    'slap part',
    '*',
    'slappart*',
    '?',
    '[slappart0]',
    '%(here)s',
    '%(ENV_HOME)s',
    'a' * 65,
    'ｓｌａｐｐａｒｔ０',
    'slappartΩ',
    'ſlappart0',
    'slappart٠',
    '\u212a',
    'slappart0\u200b',
    '\U0001f600',
    '-slappart0',
]
NON_STRINGS = [
    0,
    1,
    -1,
    2**31 - 1,
    True,
    False,
    1.5,
    [],
    ['slappart0'],
    {},
    {'slappart0': 1},
    xmlrpc.client.Binary(b'../slappart0'),
]
# (supervisord decodes base64 to a string: Binary(b'slappart0') is a valid
# id, and so is not in this list.)
# What XML-RPC can carry: no NUL and no other control character than
# \t \n \r, no surrogate, no U+FFFE/U+FFFF (those are tested apart).
XML_TEXT = st.text(
    st.characters(
        blacklist_categories=('Cs',),
        blacklist_characters=[
            chr(c) for c in range(32) if c not in (9, 10, 13)
        ]
        + ['\ufffe', '\uffff'],
    )
)
INVALID_IDS = st.one_of(
    st.sampled_from(TRICKY_IDS),
    XML_TEXT.filter(lambda s: not naming.PARTITION_ID_RE.fullmatch(s)),
    st.sampled_from(NON_STRINGS),
)


def test_tricky_ids_are_all_invalid():
    for value in TRICKY_IDS:
        with pytest.raises(ValueError):
            naming.partition_id(value)


ID_METHODS = [
    ('getPartitionInfo', ()),
    ('startPartition', ()),
    ('stopPartition', ()),
    ('destroyPartition', ()),
    ('updatePartition', ()),
    ('startPartition', (False,)),
    ('stopPartition', (False,)),
    ('destroyPartition', (False,)),
    ('writeGroupConfig', ('x', '[program:x]\ncommand=/bin/true\n')),
    ('removeGroupConfig', ('keep',)),
]


@pytest.mark.parametrize(
    'method,rest', ID_METHODS, ids=[f'{m}{len(r)}' for m, r in ID_METHODS]
)
def test_invalid_partition_id_is_refused_and_changes_nothing(
    hostile, method, rest
):
    @HOSTILE
    @given(value=INVALID_IDS)
    def check(value):
        before = hostile.tree()
        hostile.assert_refused({INVALID_NAME}, method, value, *rest)
        hostile.assert_writes_nothing_outside(before)

    check()


@HOSTILE
@given(
    pid=st.from_regex(naming.PARTITION_ID_RE, fullmatch=True).filter(
        lambda p: p not in STARTED and p != 'slappart9'
    )
)
def test_unknown_valid_partition_changes_nothing(hostile, pid):
    """A well-formed id with no files and no directory: start is refused
    (NO_PARTITION), the other methods do nothing."""
    before = hostile.state()
    hostile.assert_refused({NO_PARTITION}, 'startPartition', pid)
    for method in ('stopPartition', 'destroyPartition', 'removeGroupConfig'):
        args = (pid, 'x') if method == 'removeGroupConfig' else (pid,)
        assert hostile.call(method, *args) is True
    assert hostile.call('updatePartition', pid) == [[], [], []]
    info = hostile.call('getPartitionInfo', pid)
    assert info['state'] == 'stopped' and not info['files'], info
    assert hostile.state() == before


def test_main_config_program_is_no_partition(hostile):
    """A program of the main configuration named like a partition's is
    not that partition's: destroyPartition leaves it alone."""
    before = hostile.state()
    assert hostile.call('destroyPartition', 'slappart9') is True
    assert hostile.call('getPartitionInfo', 'slappart9')['groups'] == []
    assert hostile.state() == before


@pytest.mark.parametrize('pid', ['slappart1', 'slappart10'])
def test_no_partition_owns_another_by_prefix(hostile, pid):
    """slappart1 never owns slappart10's files or groups, nor the other
    way round."""
    info = hostile.call('getPartitionInfo', pid)
    assert info['files'] == [f'{pid}.conf']
    assert info['groups'] == [pid]


# suffixes

TRICKY_SUFFIXES = [
    '',
    '-x',
    '../x',
    'x/y',
    '/x',
    'x.conf',
    'x y',
    'x\n',
    '.x',
    'x.',
    'a' * 65,
    '-',
    '*',
    'é',
    'x\u200b',
    '%(here)s',
]
INVALID_SUFFIXES = st.one_of(
    st.sampled_from(TRICKY_SUFFIXES),
    XML_TEXT.filter(lambda s: not naming.SUFFIX_RE.fullmatch(s)),
    st.sampled_from(NON_STRINGS),
)


@HOSTILE
@given(
    value=INVALID_SUFFIXES,
    method=st.sampled_from(['writeGroupConfig', 'removeGroupConfig']),
)
def test_invalid_suffix_is_refused_and_changes_nothing(hostile, value, method):
    before = hostile.tree()
    args = ('slappart0', value)
    if method == 'writeGroupConfig':
        args += ('[program:slappart0-x]\ncommand=/bin/true\n',)
    hostile.assert_refused({INVALID_NAME}, method, *args)
    hostile.assert_writes_nothing_outside(before)


# group texts

FORBIDDEN_SECTIONS = [
    '[supervisord]\nlogfile={outside}/supervisord.log\n',
    '[include]\nfiles={outside}/*.conf\n',
    '[rpcinterface:x]\nsupervisor.rpcinterface_factory = os:system\n',
    '[rpcinterface:slapos]\nsupervisor.rpcinterface_factory = os:system\n',
    '[unix_http_server]\nfile={outside}/s.sock\n',
    '[inet_http_server]\nport=127.0.0.1:9\n',
    '[supervisorctl]\nserverurl=unix://{outside}/s.sock\n',
    '[ctlplugin:x]\nsupervisor.ctl_factory = os:system\n',
    '[eventlistener:{pid}-x]\ncommand={sleep} 1\nevents=TICK_5\n',
    '[fcgi-program:{pid}-x]\ncommand={sleep} 1\n'
    'socket=unix://{outside}/f.sock\n',
    '[group:]\nprograms=\n',
    '[program:]\ncommand={sleep} 1\n',
    '[program]\ncommand={sleep} 1\n',
    '[{pid}-x]\ncommand={sleep} 1\n',
    '[DEFAULT]\ncommand={sleep} 1\n',
]
UNOWNED_NAMES = [
    'slappart00',
    '{pid}0',
    '{pid}x',
    'x{pid}',
    'X',
    '{pid_upper}-x',
    ' {pid}-x',
    '{pid} -x',
    '../{pid}-x',
    'slappart9-main',
    'other',
    '{pid}',
    '{pid}:x',
    '-{pid}',
    '_{pid}',
]
VALID_SECTION = '[program:{pid}-ok]\ncommand={sleep} 1\nautostart=false\n'


def render(template, pid, outside):
    return template.format(
        pid=pid, pid_upper=pid.upper(), sleep=SLEEP, outside=outside
    )


def unowned_section(kind, name):
    return f'[{kind}:{name}]\ncommand={SLEEP} 1\nprograms={name}\n'


# Each strategy gives a function of (pid, outside directory) to a text.
HOSTILE_TEXTS = st.one_of(
    st.sampled_from(FORBIDDEN_SECTIONS).map(
        lambda template: lambda pid, out: render(template, pid, out)
    ),
    st.tuples(
        st.sampled_from(['program', 'group']), st.sampled_from(UNOWNED_NAMES)
    ).map(
        lambda kn: (
            lambda pid, out: unowned_section(kn[0], render(kn[1], pid, out))
        )
    ),
    st.tuples(
        st.sampled_from(['program', 'group']),
        XML_TEXT.filter(
            lambda n: (
                n.strip()
                and ']' not in n
                and '\n' not in n
                and '\r' not in n
                and ownership.Ownership().name_owner(n)
                not in ('slappart0', 'slappart1')
            )
        ),
    ).map(lambda kn: lambda pid, out: unowned_section(*kn)),
)


@HOSTILE
@given(
    make_text=HOSTILE_TEXTS,
    valid_first=st.booleans(),
    pid=st.sampled_from(['slappart0', 'slappart1']),
    sfx=st.sampled_from(['keep', 'new']),
)
def test_hostile_group_text_is_refused_and_changes_nothing(
    hostile, make_text, valid_first, pid, sfx
):
    """A section of another kind, or named for someone else, is refused,
    alone or next to a valid section, for a new file or one that exists."""
    bad = make_text(pid, hostile.outside)
    good = render(VALID_SECTION, pid, hostile.outside)
    text = good + '\n' + bad if valid_first else bad
    before = hostile.tree()
    fault = hostile.assert_refused(
        {BAD_CONFIG}, 'writeGroupConfig', pid, sfx, text
    )
    assert fault.faultString.startswith('BAD_CONFIG:'), fault.faultString
    assert f'{pid}-{sfx}.conf' in fault.faultString, fault.faultString
    hostile.assert_writes_nothing_outside(before)


def test_manager_file_may_not_define_the_partition_group(hostile):
    for text in (
        '[group:slappart0]\nprograms=slappart0-keep\n',
        f'[program:slappart0]\ncommand={SLEEP} 1\n',
    ):
        hostile.assert_refused(
            {BAD_CONFIG}, 'writeGroupConfig', 'slappart0', 'x', text
        )


STEALING_TEXTS = {
    # supervisor merges a section found in two files: the manager would
    # change the partition's own service (or another manager's)
    'redefine-own-program': '[program:slappart0_r0]\nenvironment=X="y"\n',
    'redefine-manager-program': f'[program:slappart0-keep]\n'
    f'command={SLEEP} 7\n',
    # a program listed by two groups runs twice, once in each
    'adopt-own-program': '[group:slappart0-g]\nprograms=slappart0_r0\n',
    'adopt-manager-program': '[group:slappart0-g]\nprograms=slappart0-keep\n',
    'list-twice': f'[group:slappart0-g]\nprograms=slappart0-p\n'
    f'[group:slappart0-h]\nprograms=slappart0-p\n'
    f'[program:slappart0-p]\ncommand={SLEEP} 1\n',
}


@pytest.mark.parametrize('name', sorted(STEALING_TEXTS))
def test_manager_file_may_not_take_another_files_programs(hostile, name):
    """No file of P changes or runs the programs of another file of P:
    the same service would run twice, or change behind its file."""
    fault = hostile.assert_refused(
        {BAD_CONFIG},
        'writeGroupConfig',
        'slappart0',
        'x',
        STEALING_TEXTS[name],
    )
    assert 'slappart0-x.conf' in fault.faultString, fault.faultString


SYNTAX_ERRORS = [
    'no section header\n',
    '[program:{pid}-x\ncommand=/bin/true\n',
    '[program:{pid}-x]\n',
    '[program:{pid}-x]\ncommand=/bin/true\nnumprocs=abc\n',
    '[program:{pid}-x]\ncommand=/bin/true\nnumprocs=2\n',
    '[program:{pid}-x]\ncommand=/bin/true\nprocess_name=a/b\n',
    '[program:{pid}-x]\ncommand=/bin/true\nuser=nosuchuser\n',
    '[program:{pid}-x]\ncommand=%(nosuchvariable)s\n',
    '[program:{pid}-x]\ncommand=%(ENV_NOSUCHVARIABLE_ANYWHERE)s\n',
    '[program:{pid}-x]\ncommand=/bin/true\nautostart=maybe\n',
    '[program:{pid}-x]\ncommand=/bin/true\nstdout_logfile_maxbytes=lots\n',
    '[program:{pid}-x]\ncommand=/bin/true\nenvironment=A="1\n',
    '[group:{pid}-g]\nprograms={pid}-nosuchprogram\n',
    '[group:{pid}-g]\nprograms=slappart9-main\n',
    '[program:{pid}-x]\ncommand=/bin/true\npriority=-\n',
    ';' + 'x' * (1024 * 1024) + '\n',
]


@pytest.mark.parametrize(
    'template', SYNTAX_ERRORS, ids=[f's{i}' for i in range(len(SYNTAX_ERRORS))]
)
def test_text_that_does_not_parse_is_refused(hostile, template):
    text = template.replace('{pid}', 'slappart0')
    before = hostile.tree()
    try:
        fault = hostile.assert_refused(
            {BAD_CONFIG}, 'writeGroupConfig', 'slappart0', 'x', text
        )
    finally:
        hostile.call('removeGroupConfig', 'slappart0', 'x')
    assert (
        'slappart0-x.conf' in fault.faultString
        or 'larger than' in fault.faultString
    ), fault.faultString
    hostile.assert_writes_nothing_outside(before)


@HOSTILE
@given(
    text=st.one_of(
        XML_TEXT,
        st.builds(
            lambda head, body: head + body,
            st.sampled_from(
                [
                    '[program:slappart0-r]\n',
                    '[group:slappart0-r]\n',
                    '[program:slappart0-r]\ncommand=/bin/true\n',
                ]
            ),
            XML_TEXT,
        ),
    )
)
def test_random_group_text_is_refused_cleanly_or_written_as_is(hostile, text):
    """Whatever the text: a clean BAD_CONFIG that changes nothing, or the
    file holds exactly that text; nothing is ever written elsewhere."""
    path = hostile.node.include_file('slappart0-r.conf')
    before_tree = hostile.tree()
    before = hostile.state()
    result = hostile.call('writeGroupConfig', 'slappart0', 'r', text)
    try:
        if isinstance(result, xmlrpc.client.Fault):
            assert result.faultCode == BAD_CONFIG, result
            assert hostile.state() == before
        else:
            assert isinstance(result, list) and len(result) == 3, result
            assert path.read_text() == text.replace('\r\n', '\n').replace(
                '\r', '\n'
            )
        hostile.assert_writes_nothing_outside(before_tree)
    finally:
        if path.exists():
            assert hostile.call('removeGroupConfig', 'slappart0', 'r') is True


OUTSIDE_OPTIONS = [
    'stdout_logfile={outside}/log',
    'stderr_logfile={outside}/err',
    'stdout_logfile=%(here)s/../../../outside/log',
    'directory={outside}',
    'directory=/',
    'command={outside}/../outside/secret',
]


@pytest.mark.parametrize('option', OUTSIDE_OPTIONS)
def test_options_that_point_outside_write_nothing_there(hostile, option):
    """A manager may name paths anywhere (its processes are its business),
    but writing and applying its file creates nothing outside."""
    text = (
        f'[program:slappart0-o]\ncommand={SLEEP} 1\nautostart=false\n'
        + option.format(outside=hostile.outside)
        + '\n'
    )
    before = hostile.tree()
    try:
        result = hostile.call('writeGroupConfig', 'slappart0', 'o', text)
        assert (
            not isinstance(result, xmlrpc.client.Fault)
            or result.faultCode == BAD_CONFIG
        ), result
        hostile.assert_writes_nothing_outside(before)
    finally:
        assert hostile.call('removeGroupConfig', 'slappart0', 'o') is True
    hostile.assert_writes_nothing_outside(before)


def test_non_string_text_is_refused(hostile):
    for value in NON_STRINGS:
        hostile.assert_refused(
            {BAD_CONFIG}, 'writeGroupConfig', 'slappart0', 'x', value
        )


# what XML-RPC cannot carry

# supervisord never answers some requests (an empty body: its collector
# waits for data that never comes; a body that is not UTF-8: it drops the
# connection); that connection alone suffers.
RAW_TIMEOUT = 3


def raw_post(node, body):
    """POST ``body`` (bytes) to supervisord's /RPC2; return the status, or
    None when supervisord does not answer that request."""
    conn = http.client.HTTPConnection('localhost', timeout=RAW_TIMEOUT)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.settimeout(RAW_TIMEOUT)
    conn.sock.connect(str(node.socket))
    try:
        conn.request('POST', '/RPC2', body, {'Content-Type': 'text/xml'})
        return conn.getresponse().status
    except (socket.timeout, http.client.RemoteDisconnected):
        return None
    finally:
        conn.close()


def call_body(method, *params):
    return xmlrpc.client.dumps(params, f'slapos.{method}').encode()


UNCARRIABLE = ['\x00', '\x01', '\x08', '\x0b', '\x1b', '\x1f', '\ufffe']


@pytest.mark.parametrize(
    'char', UNCARRIABLE, ids=[f'U+{ord(c):04X}' for c in UNCARRIABLE]
)
@pytest.mark.parametrize('where', ['id', 'suffix', 'text'])
def test_uncarriable_character_gets_http_400_and_changes_nothing(
    hostile, char, where
):
    """A NUL (or another character XML 1.0 forbids) never reaches the
    plugin: supervisord answers HTTP 400."""
    args = ['slappart0', 'x', '[program:slappart0-x]\ncommand=/bin/true\n']
    index = ('id', 'suffix', 'text').index(where)
    args[index] = args[index][:4] + char + args[index][4:]
    before = hostile.state()
    with pytest.raises(xmlrpc.client.ProtocolError) as info:
        hostile.slapos.writeGroupConfig(*args)
    assert info.value.errcode == 400
    assert hostile.state() == before


@pytest.mark.parametrize(
    'body',
    [
        b'',
        b'garbage',
        b'<?xml version="1.0"?><methodCall>',
        call_body('destroyPartition', 'slappart0').replace(
            b'slappart0', b'slappart0\xff'
        ),
        call_body('destroyPartition', 'slappart0').replace(
            b'slappart0', b'slap\xc3part0'
        ),
        call_body('destroyPartition', 'slappart0').replace(
            b'slappart0', b'&#0;'
        ),
        call_body('destroyPartition', 'slappart0')
        .replace(b'<string>', b'<string><![CDATA[')
        .replace(b'</string>', b']]></string>')
        .replace(b'slappart0', b'\x00'),
    ],
    ids=[
        'empty',
        'garbage',
        'truncated',
        'bad-utf8',
        'bad-utf8-2',
        'nul-entity',
        'nul-cdata',
    ],
)
def test_malformed_request_changes_nothing(hostile, body):
    before = hostile.state()
    status = raw_post(hostile.node, body)
    assert status in (None, 200, 400), status  # 200 carries a fault
    assert hostile.state() == before
    assert hostile.node.rpc.supervisor.getState()['statename'] == 'RUNNING'
