"""Every public method of the ``slapos`` namespace documents itself the way
``system.methodHelp`` and ``system.methodSignature`` read it."""

import inspect

import pytest
from supervisor.xmlrpc import gettags

from supervisor_slapos.rpcinterface import SlaposNamespaceRPCInterface

XMLRPC_TYPES = {
    'string',
    'int',
    'boolean',
    'double',
    'array',
    'struct',
    'base64',
    'dateTime.iso8601',
}

# What supervisord serves: the class's own callables without a leading _.
METHODS = sorted(
    name
    for name, value in vars(SlaposNamespaceRPCInterface).items()
    if callable(value) and not name.startswith('_')
)


def tags_of(name):
    """{tag: [(datatype, name), ...]} and the summary of a docstring."""
    tags = {}
    summary = ''
    for _, tag, datatype, tag_name, text in gettags(
        getattr(SlaposNamespaceRPCInterface, name).__doc__ or ''
    ):
        if tag is None:
            summary = text
        else:
            tags.setdefault(tag, []).append((datatype, tag_name))
    return summary, tags


DEFAULT_TYPES = {bool: 'boolean', int: 'int', str: 'string', float: 'double'}


def signature(name):
    method = getattr(SlaposNamespaceRPCInterface, name)
    return list(inspect.signature(method).parameters.values())[1:]  # no self


def parameters(name):
    return [parameter.name for parameter in signature(name)]


@pytest.mark.parametrize('name', METHODS)
def test_docstring_has_a_summary_and_one_typed_return(name):
    summary, tags = tags_of(name)
    assert summary, f'{name}: no summary line'
    returns = tags.get('return', [])
    assert len(returns) == 1, f'{name}: {len(returns)} @return tags'
    assert returns[0][0] in XMLRPC_TYPES, f'{name}: @return {returns[0]}'


@pytest.mark.parametrize('name', METHODS)
def test_docstring_names_each_parameter_with_its_type(name):
    _, tags = tags_of(name)
    params = tags.get('param', [])
    assert [param_name for _, param_name in params] == parameters(name)
    for (datatype, param_name), parameter in zip(params, signature(name)):
        assert datatype in XMLRPC_TYPES, f'{name}: @param {param_name}'
        if parameter.default is not inspect.Parameter.empty:
            assert datatype == DEFAULT_TYPES[type(parameter.default)], (
                f'{name}: {param_name} defaults to {parameter.default!r}'
            )


def test_the_namespace_has_the_spec_methods():
    assert {
        'getAPIVersion',
        'getPartitionInfo',
        'getAllPartitionInfo',
        'startPartition',
        'stopPartition',
        'destroyPartition',
        'updatePartition',
        'writeGroupConfig',
        'removeGroupConfig',
        'startAllPartitions',
        'getSyncState',
    } <= set(METHODS)


def test_supervisord_serves_each_signature_and_help(node):
    system = node.rpc.system
    served = sorted(
        name.split('.', 1)[1]
        for name in system.listMethods()
        if name.startswith('slapos.')
    )
    assert served == METHODS
    for name in served:
        signature = system.methodSignature(f'slapos.{name}')
        assert len(signature) == 1 + len(parameters(name)), name
        assert system.methodHelp(f'slapos.{name}').strip(), name
