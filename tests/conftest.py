import pytest
import supervisor.options

from supervisor_slapos import internals
from tests.crash import child_subreaper
from testbed.node import SupervisorNode
from tests.powerloss_fs import PowerLossFS
from testbed.listener_fakes import ListenerHarness
from testbed.slapos_master import Master, make_pki


@pytest.fixture(autouse=True)
def supervisors_own_reads(monkeypatch):
    """The plugin installs its reads process-wide (in supervisor.options,
    when an in-process test makes its RPC interface): every test starts
    with supervisor's own, and leaves them so."""
    monkeypatch.setattr(supervisor.options, 'UnhosedConfigParser',
                        internals.PLAIN_PARSER)
    monkeypatch.setattr(supervisor.options.ServerOptions, 'read_config',
                        internals.PLAIN_READ_CONFIG)


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
