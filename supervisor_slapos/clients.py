"""Whether a client of supervisord is waiting for it.

A job that works in time slices inside supervisord's loop (the offline
start) ends its slice early when one is: its request is then read and
answered in the next turn of the loop instead of after the whole slice.
"""

import select

READABLE = select.POLLIN | select.POLLPRI


def waiting(socket_map):
    """True when a socket of ``socket_map`` (supervisord's HTTP servers and
    their channels, ``options.get_socket_map()``) has something to read: a
    new connection, a request, or a hang-up."""
    poller = select.poll()
    for fd in list(socket_map):
        poller.register(fd, READABLE)
    return bool(poller.poll(0))
