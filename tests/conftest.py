import pytest

from tests.node import SupervisorNode


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
