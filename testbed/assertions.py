"""Assertions on the ``slapos`` namespace's faults, over XML-RPC."""

import xmlrpc.client

import pytest


def assert_fault(code, call, *args):
    """Call ``call(*args)``, expect a Fault of ``code``; return its text."""
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(*args)
    assert info.value.faultCode == code, info.value.faultString
    return info.value.faultString
