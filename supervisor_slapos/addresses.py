"""Addresses first: wait until the partitions' addresses exist on the host.

At boot, ``slapos node boot`` (``slapos node format``) adds the partitions'
addresses to the host; a service started before its address exists fails
to bind it. Beside slapgrid the listener's offline start at supervisord's
start waits (bounded) until every address of ``computer_json`` can be
bound here. An IPv6 address still in duplicate address detection
(tentative) cannot be bound yet, which is what a service would meet too.

No clock and no sleep of its own: the caller gives them (tests run the
wait on a fake clock).
"""
import socket

# How often the missing addresses are tried while waiting.
POLL_INTERVAL = 0.5


def can_bind(address):
    """True when a socket can be bound to ``(address, 0)`` on this host."""
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except (OSError, ValueError, OverflowError):
        return False
    return True


def wait_for_addresses(addresses, limit, clock, sleep, bindable=can_bind,
                       interval=POLL_INTERVAL):
    """Wait until every address of ``addresses`` is ``bindable``, at most
    ``limit`` seconds by ``clock``; return the addresses still missing
    (empty: all there). Only the missing ones are tried again."""
    deadline = clock() + limit
    missing = [address for address in addresses if not bindable(address)]
    while missing:
        left = deadline - clock()
        if left <= 0:
            break
        sleep(min(interval, left))
        missing = [address for address in missing if not bindable(address)]
    return missing
