"""Addresses first: wait until the partitions' addresses exist on the host.

At boot, ``slapos node boot`` (``slapos node format``) adds the partitions'
addresses to the host; a service started before its address exists fails
to bind it. Beside slapgrid the listener's offline start at supervisord's
start waits (bounded) until every address of ``computer_json`` can be
bound here. An IPv6 address still in duplicate address detection
(tentative) cannot be bound yet, which is what a service would meet too.

Only numeric addresses are waited for: each is parsed with ``ipaddress``
(an IPv6 scope by its interface's index, looked up locally) and bound as
the socket address it is, so that no name is ever resolved (a resolver
that hangs would stretch the wait beyond its bound). The deadline is
checked before each address is tried, so the wait is a bound whatever the
dump holds.

No clock and no sleep of its own: the caller gives them (tests run the
wait on a fake clock).
"""
import ipaddress
import socket

# How often the missing addresses are tried while waiting.
POLL_INTERVAL = 0.5


def socket_address(text):
    """``(family, sockaddr)`` of the numeric address ``text``; ValueError
    when it is none (a name, ``10.0.0.300``, an IPv6 scope that names no
    interface of this host)."""
    if not isinstance(text, str):
        raise ValueError(f'{text!r} is not an address')
    address = ipaddress.ip_address(text)
    if address.version == 4:
        return socket.AF_INET, (str(address), 0)
    scope = address.scope_id
    if scope is None:
        index = 0
    elif scope.isdigit():
        index = int(scope)
    else:
        try:
            index = socket.if_nametoindex(scope)
        except OSError:
            raise ValueError(f'{text!r}: no interface {scope!r} here') \
                from None
    host = str(ipaddress.IPv6Address(text.split('%', 1)[0]))
    return socket.AF_INET6, (host, 0, 0, index)


def numeric_addresses(addresses):
    """``(numeric, others)``: those of ``addresses`` that are numeric
    (``socket_address``), and the others."""
    numeric, others = [], []
    for address in addresses:
        try:
            socket_address(address)
        except ValueError:
            others.append(address)
        else:
            numeric.append(address)
    return numeric, others


def can_bind(address):
    """True when a socket can be bound to the numeric ``address`` (port 0)
    on this host; never for anything else (nothing is resolved)."""
    try:
        family, sockaddr = socket_address(address)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind(sockaddr)
    except (OSError, ValueError, OverflowError):
        return False
    return True


def missing_addresses(addresses, deadline, clock, bindable=can_bind):
    """Those of ``addresses`` that are not ``bindable``; once ``clock()``
    reaches ``deadline``, those not tried yet count as missing."""
    missing = []
    for position, address in enumerate(addresses):
        if clock() >= deadline:
            return missing + list(addresses[position:])
        if not bindable(address):
            missing.append(address)
    return missing


def wait_for_addresses(addresses, deadline, clock, sleep, bindable=can_bind,
                       interval=POLL_INTERVAL):
    """Wait until every address of ``addresses`` is ``bindable``, at most
    until ``deadline`` by ``clock``; return the addresses still missing
    (empty: all there). Only the missing ones are tried again."""
    missing = missing_addresses(addresses, deadline, clock, bindable)
    while missing:
        left = deadline - clock()
        if left <= 0:
            break
        sleep(min(interval, left))
        missing = missing_addresses(missing, deadline, clock, bindable)
    return missing
