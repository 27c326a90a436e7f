import pytest
import supervisor.options

from supervisor_slapos import internals
from testbed.listener_fakes import ListenerHarness
from testbed.node import SupervisorNode
from testbed.polling import wait_until
from testbed.slapos_master import Master, make_pki
from tests.crash import child_subreaper
from tests.listener_node import (
    make_listening_node,
    register,
    reports,
    request,
)
from tests.powerloss_fs import PowerLossFS


@pytest.fixture(autouse=True)
def supervisors_own_reads(monkeypatch):
    """The plugin installs its reads process-wide (in supervisor.options,
    when an in-process test makes its RPC interface): every test starts
    with supervisor's own, and leaves them so."""
    monkeypatch.setattr(
        supervisor.options, 'UnhosedConfigParser', internals.PLAIN_PARSER
    )
    monkeypatch.setattr(
        supervisor.options.ServerOptions,
        'read_config',
        internals.PLAIN_READ_CONFIG,
    )


@pytest.fixture
def make_node(tmp_path):
    """Build (not start) SupervisorNodes; all are killed at teardown."""
    nodes = []

    def make(name='node', **kwargs):
        node = SupervisorNode(tmp_path / name, **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.cleanup()


@pytest.fixture
def node(make_node):
    """A started node with no listener."""
    return make_node().start()


@pytest.fixture
def master(tmp_path):
    """A real ``slapos proxy`` master in ``tmp_path/master``."""
    m = Master(tmp_path / 'master')
    yield m
    m.close()


@pytest.fixture(scope='session')
def pki(tmp_path_factory):
    """Two CAs, a server certificate for 127.0.0.1 and a client
    certificate (``slapos_master.make_pki``), made once."""
    return make_pki(tmp_path_factory.mktemp('pki'))


@pytest.fixture
def make(tmp_path):
    """Build listeners on fakes: ``make(**kwargs)`` is a
    ``listener_fakes.ListenerHarness`` in ``tmp_path``."""

    def factory(**kwargs):
        return ListenerHarness(tmp_path, **kwargs)

    return factory


@pytest.fixture
def powerloss_fs(tmp_path):
    """The filesystem of tests/powerloss_fs.py mounted on
    ``tmp_path/durable`` (skips where FUSE cannot be mounted). Ask for it
    before ``make_node``: the nodes are then killed before it unmounts."""
    fs = PowerLossFS(tmp_path / 'durable', tmp_path / 'powerloss_fs.log')
    yield fs
    fs.close()


@pytest.fixture
def subreaper():
    """This process reaps the orphans of a killed supervisord."""
    yield from child_subreaper()


@pytest.fixture
def online(make_node, master):
    """A node synced with the master: inst0 started, inst1 stopped,
    inst2 started; returns (node, master, {title: (guid, pid)})."""
    register(master)
    instances = {
        title: request(master, title, state)
        for title, state in (
            ('inst0', 'started'),
            ('inst1', 'stopped'),
            ('inst2', 'started'),
        )
    }
    node = make_listening_node(make_node, master.url)
    node.start()
    started = [instances['inst0'], instances['inst2']]
    wait_until(
        lambda: (
            all(node.group_running(pid) for _, pid in started)
            and all(reports(master, g, 'started') for g, _ in started)
            and reports(master, instances['inst1'][0], 'stopped')
            # recorded once the start attempt, startAllPartitions
            # included, is over
            and node.sync_state()['mode'] == 'online'
        ),
        30,
        what='the first sync',
    )
    return node, master, instances
