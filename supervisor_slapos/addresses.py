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

The wait is written once, :class:`AddressWait`, and stepped by its
caller: the listener sleeps between two steps, the plugin takes a step at
a turn of supervisord's loop (``offlinestart.py``), which it never makes
wait. No clock and no sleep of its own: the caller gives the clock (tests
run the wait on a fake one), and where its words go (``log``).
"""

import ipaddress
import logging
import socket

from supervisor_slapos.formatreport import FormatFileError, partition_addresses
from supervisor_slapos.startresults import shorten

# How often the missing addresses are tried while waiting.
POLL_INTERVAL = 0.5
# The longest wait for the partitions' addresses (--address-wait's default).
ADDRESS_WAIT = 120.0


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
            raise ValueError(
                f'{text!r}: no interface {scope!r} here'
            ) from None
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


def addresses_to_wait_for(computer_json, log):
    """The numeric addresses of ``computer_json``'s partitions. What is no
    numeric address is logged (``log(level, text)``) and skipped, and so
    is a dump that cannot be read: nothing is resolved."""
    try:
        addresses = partition_addresses(computer_json)
    except FormatFileError as exc:
        log(
            logging.WARNING,
            f"not waiting for the partitions' addresses: computer_json {exc}",
        )
        return []
    addresses, others = numeric_addresses(addresses)
    if others:
        log(
            logging.WARNING,
            f'not waiting for {len(others)} entries of computer_json that '
            f'are no numeric address of this host (no name is resolved): '
            f'{shorten([repr(o) for o in others])}',
        )
    return addresses


class AddressWait:
    """Wait, at most ``seconds`` from :meth:`begin` by ``clock``, until
    every one of ``addresses`` is ``bindable``; say so through ``log``
    (``log(level, text)``, a ``logging`` level).

    The caller steps it: :meth:`begin` once, then, while not ``done``,
    :meth:`step` once :meth:`seconds_to_next_try` have passed. Only the
    missing addresses are tried again; the deadline is checked before each
    address is tried.
    """

    def __init__(
        self,
        addresses,
        seconds,
        clock,
        log,
        bindable=can_bind,
        interval=POLL_INTERVAL,
    ):
        self.missing = list(addresses)
        self._count = len(self.missing)
        self._seconds = seconds
        self._clock = clock
        self._log = log
        self._bindable = bindable
        self._interval = interval
        self._begun = self._deadline = self._next_try = None
        self.done = False

    def begin(self):
        """Try every address once; ``done`` when all are there (or there
        is nothing to wait for), else say what it waits for."""
        self._begun = self._clock()
        self._deadline = self._begun + self._seconds
        if not (self.missing and self._seconds > 0):
            self.done = True
            return
        self._try()
        if not self.missing:
            self.done = True
            return
        self._log(
            logging.INFO,
            f'waiting up to {self._seconds:g} s for '
            f'{len(self.missing)} of the partitions\' {self._count} '
            f'addresses before the offline start: '
            f'{shorten(self.missing)}',
        )

    def seconds_to_next_try(self):
        """How long until the next :meth:`step` is worth taking."""
        return max(0.0, min(self._next_try, self._deadline) - self._clock())

    def step(self):
        """Try the missing addresses again; ``done`` when all are there or
        the deadline has come (then the missing are named)."""
        self._try()
        waited = self._clock() - self._begun
        if not self.missing:
            self._log(
                logging.INFO, f'every address is there after {waited:.1f} s'
            )
            self.done = True
        elif self._clock() >= self._deadline:
            self._log(
                logging.WARNING,
                f'starting anyway after {waited:.1f} s: '
                f'{len(self.missing)} addresses still missing: '
                f'{shorten(self.missing)}',
            )
            self.done = True

    def _try(self):
        self.missing = missing_addresses(
            self.missing, self._deadline, self._clock, self._bindable
        )
        self._next_try = self._clock() + self._interval
