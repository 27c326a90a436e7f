"""Access: the plugin's methods are behind supervisord's own check.

The RPC methods write files and start processes as supervisord's user
(root on a node), so:

- the sample keeps the unix socket at mode 0700 and shows an inet server
  only with a username and a password;
- on a server with a username and a password, a client without them, or
  with wrong ones, gets HTTP 401 from every ``slapos.*`` method too, and
  nothing changes; with them, the methods work;
- the listener takes the credentials from its environment
  (``environment=SUPERVISOR_USERNAME=...,SUPERVISOR_PASSWORD=...``), and
  without them cannot do its work;
- nothing the listener or supervisord logs or records shows a secret
  (supervisord's password, the password of the master URL, the TLS key),
  with supervisord at its most verbose log level.
"""

import os
import stat
import xmlrpc.client
from pathlib import Path

import pytest
from supervisor.options import UnhosedConfigParser
from supervisor.xmlrpc import SupervisorTransport

from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.node import SupervisorNode
from testbed.polling import wait_until
from testbed.slapos_master import FaultProxy, free_port, server_ssl_context

USERNAME = 'slapos-admin'
PASSWORD = 'Pa55-w0rd-not-in-logs-7f3c'
SAMPLE = Path(__file__).resolve().parent.parent / 'sample.conf'
UNAUTHORIZED = 401


class AuthNode(SupervisorNode):
    """A node whose unix socket and inet server (127.0.0.1, free port)
    both require USERNAME/PASSWORD; ``listener_credentials`` says whether
    the listener's section passes them on."""

    def __init__(self, root, listener_credentials=True, **kwargs):
        self.port = free_port()
        self.listener_credentials = listener_credentials
        super().__init__(root, **kwargs)

    def write_config(self):
        super().write_config()
        text = self.config.read_text()
        auth = f'username = {USERNAME}\npassword = {PASSWORD}\n'
        text = text.replace('chmod = 0700\n', 'chmod = 0700\n' + auth, 1)
        text = text.replace(
            f'serverurl = unix://{self.socket}\n',
            f'serverurl = unix://{self.socket}\n' + auth,
            1,
        )
        text += f'\n[inet_http_server]\nport = 127.0.0.1:{self.port}\n{auth}'
        if self.listener_credentials:
            text = text.replace(
                '[eventlistener:slapos]\n',
                '[eventlistener:slapos]\nenvironment = '
                f'SUPERVISOR_USERNAME="{USERNAME}",'
                f'SUPERVISOR_PASSWORD="{PASSWORD}"\n',
                1,
            )
        self.config.write_text(text)

    @property
    def rpc(self):
        return self.proxy('unix', USERNAME, PASSWORD)

    def proxy(self, server, username, password):
        if server == 'unix':
            return xmlrpc.client.ServerProxy(
                'http://127.0.0.1',
                transport=SupervisorTransport(
                    username, password, f'unix://{self.socket}'
                ),
            )
        return xmlrpc.client.ServerProxy(
            f'http://127.0.0.1:{self.port}/RPC2',
            transport=SupervisorTransport(
                username, password, f'http://127.0.0.1:{self.port}/RPC2'
            ),
        )


def write_started(node, pid, run):
    """Make partition ``pid`` and its P.conf (started), before a start."""
    node.make_partition(pid, run=run)
    node.include_file(f'{pid}.conf').write_text(
        generate_partition_conf(str(node.instance_root), pid)
    )


# the sample


def test_sample_keeps_the_socket_private_and_inet_behind_a_password():
    if not SAMPLE.exists():
        pytest.skip('no sample.conf')
    parser = UnhosedConfigParser()
    parser.read(str(SAMPLE))
    assert parser.get('unix_http_server', 'chmod') == '0700'
    text = SAMPLE.read_text()
    if parser.has_section('inet_http_server'):
        assert parser.get('inet_http_server', 'username')
        assert parser.get('inet_http_server', 'password')
    else:  # shown commented out: with its username and password
        example = text[text.index('[inet_http_server]') :]
        assert 'username' in example.split('\n\n')[0]
        assert 'password' in example.split('\n\n')[0]
    assert 'SUPERVISOR_PASSWORD' in text


def test_socket_is_created_with_mode_0700(node):
    assert stat.S_IMODE(os.stat(node.socket).st_mode) == 0o700


# the servers


@pytest.fixture
def auth_node(make_node, tmp_path):
    node = AuthNode(tmp_path / 'auth')
    node.make_partition('slappart0', run=['r0'])
    node.make_partition('slappart1', run=['r0'])
    node.start()
    node.rpc.slapos.startPartition('slappart1')
    node.wait_execed('slappart1')
    yield node
    node.cleanup()


CALLS = [
    ('getAPIVersion', ()),
    ('getAllPartitionInfo', ()),
    ('getPartitionInfo', ('slappart1',)),
    ('getSyncState', ()),
    ('startPartition', ('slappart0',)),
    ('stopPartition', ('slappart1',)),
    ('destroyPartition', ('slappart1',)),
    ('updatePartition', ('slappart1',)),
    (
        'writeGroupConfig',
        ('slappart1', 'x', '[program:slappart1-x]\ncommand=/bin/true\n'),
    ),
    ('removeGroupConfig', ('slappart1', 'x')),
    ('startAllPartitions', ()),
]
BAD_CREDENTIALS = {
    'none': (None, None),
    'empty': ('', ''),
    'wrong-password': (USERNAME, PASSWORD + 'x'),
    'wrong-username': ('root', PASSWORD),
    'no-password': (USERNAME, ''),
}


@pytest.mark.parametrize('server', ['inet', 'unix'])
@pytest.mark.parametrize('credentials', sorted(BAD_CREDENTIALS))
def test_plugin_methods_refuse_a_client_without_credentials(
    auth_node, server, credentials
):
    node = auth_node
    listing = node.include_listing()
    processes = node.process_table()
    client = node.proxy(server, *BAD_CREDENTIALS[credentials])
    for method, args in CALLS:
        with pytest.raises(xmlrpc.client.ProtocolError) as info:
            getattr(client.slapos, method)(*args)
        assert info.value.errcode == UNAUTHORIZED, (method, info.value)
    with pytest.raises(xmlrpc.client.ProtocolError):
        client.system.multicall(
            [
                {
                    'methodName': 'slapos.destroyPartition',
                    'params': ['slappart1'],
                }
            ]
        )
    assert node.include_listing() == listing
    assert node.process_table() == processes


@pytest.mark.parametrize('server', ['inet', 'unix'])
def test_plugin_methods_work_with_credentials(auth_node, server):
    node = auth_node
    slapos = node.proxy(server, USERNAME, PASSWORD).slapos
    assert slapos.getAPIVersion()
    assert slapos.startPartition('slappart0') is True
    node.wait_execed('slappart0')
    assert slapos.getPartitionInfo('slappart0')['state'] == 'started'
    assert slapos.stopPartition('slappart0') is True
    assert slapos.getPartitionInfo('slappart0')['state'] == 'stopped'


# the listener


def listener_node(tmp_path, name, credentials, listener_args=(), **kwargs):
    # instant_start = false: the offline start is the listener's own call
    # (else, without a master URL, the plugin runs it inside supervisord)
    node = AuthNode(
        tmp_path / name,
        listener_credentials=credentials,
        listener=list(listener_args),
        rpc_options='instant_start = false\n',
        **kwargs,
    )
    write_started(node, 'slappart0', ['r0'])
    return node


def test_listener_authenticates_with_its_environment(tmp_path):
    node = listener_node(tmp_path, 'with', credentials=True)
    try:
        node.start()
        # the offline start: only the listener calls startAllPartitions
        wait_until(
            lambda: node.group_running('slappart0'),
            60,
            what='the offline start by the listener',
        )
        state = wait_until(
            lambda: (lambda s: s if s['mode'] == 'offline' else None)(
                node.rpc.slapos.getSyncState()
            ),
            30,
            what='the sync state',
        )
        assert state['master_url'] == ''
    finally:
        node.cleanup()


def test_listener_without_credentials_cannot_start_anything(tmp_path):
    node = listener_node(tmp_path, 'without', credentials=False)
    log = node.root / 'listener.log'
    try:
        node.start()
        wait_until(
            lambda: log.exists() and 'getStateDir() failed' in log.read_text(),
            60,
            what='the listener giving up',
        )
        assert 'Unauthorized' in log.read_text() or '401' in log.read_text()
        assert not node.group_running('slappart0')
    finally:
        node.cleanup()


def test_nothing_logged_or_recorded_shows_a_secret(tmp_path, pki):
    key_lines = [
        line
        for line in Path(pki['client.key']).read_text().splitlines()
        if line and not line.startswith('-----')
    ]
    url_password = 'url-secret-9d2e'
    master = FaultProxy(upstream=None, ssl_context=server_ssl_context(pki))
    master.set_fault('status', status=503)
    url = master.url.replace(
        'https://', f'https://master-user:{url_password}@'
    )
    node = listener_node(
        tmp_path,
        'secrets',
        credentials=True,
        loglevel='blather',
        listener_args=[
            '--master-url',
            url,
            '--computer-id',
            'COMP-1',
            '--cert-file',
            pki['client.pem'],
            '--key-file',
            pki['client.key'],
            '--ca-file',
            pki['ca.pem'],
            '--timeout',
            '5',
        ],
    )
    try:
        node.start()
        wait_until(
            lambda: node.group_running('slappart0'),
            60,
            what='the offline start',
        )
        state = wait_until(
            lambda: (lambda s: s if s['last_error'] else None)(
                node.rpc.slapos.getSyncState()
            ),
            30,
            what='a failed attempt',
        )
        assert '503' in state['last_error'], state
        assert master.requests, 'the listener never reached the master'
        # one more start of the listener, for more log
        node.rpc.supervisor.stopProcess('slapos:slapos')
        node.rpc.supervisor.startProcess('slapos:slapos')
        wait_until(
            lambda: len(master.requests) >= 2, 30, what='a second attempt'
        )
        secrets = [PASSWORD, url_password, *key_lines]
        places = {'getSyncState()': repr(node.rpc.slapos.getSyncState())}
        for path in node.root.rglob('*'):
            if path.is_file() and path.suffix != '.sock':
                places[str(path.relative_to(node.root))] = path.read_text(
                    errors='replace'
                )
        assert 'listener.log' in places and places['listener.log']
        leaks = [
            (where, secret[:12])
            for where, text in places.items()
            for secret in secrets
            if secret in text and not where.endswith('supervisord.conf')
        ]
        assert not leaks, leaks
        assert f'master-user:{url_password}' not in places['getSyncState()']
    finally:
        node.cleanup()
        master.close()
