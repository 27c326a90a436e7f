"""The ``slapos`` namespace's fault codes and the error that carries them.

Shared by the RPC interface (inside supervisord) and the supervisorctl
plugin (in supervisorctl): a module of its own, so that the ctl plugin
need not import the RPC interface.
"""

import contextlib

from supervisor.xmlrpc import Faults as SupervisorFaults
from supervisor.xmlrpc import RPCError


class Faults:
    """Codes outside supervisor's own (1 to 92), so that none can clash."""

    INVALID_NAME = 301
    NO_PARTITION = 302
    BAD_CONFIG = 303
    PROCESS_FAILED = 304
    FILE_ERROR = 305


def fault_name(code):
    """The name of one of our codes, or ``UNKNOWN``."""
    for name, value in vars(Faults).items():
        if value == code:
            return name
    return 'UNKNOWN'


def fault_codes():
    """Every code of :class:`Faults`."""
    return frozenset(
        value for name, value in vars(Faults).items() if name.isupper()
    )


class SlaposError(RPCError):
    """An RPCError whose text starts with one of our fault names (plain
    RPCError would say UNKNOWN for codes supervisor does not know)."""

    def __init__(self, code, message):
        self.code = code
        self.text = f'{fault_name(code)}: {message}'


def as_fault(error):
    """The RPCError a caller gets for an exception an operation raised:
    itself for an RPCError, FILE_ERROR naming the system's own words for
    a filesystem error (``No space left on device``), FAILED otherwise."""
    if isinstance(error, RPCError):
        return error
    if isinstance(error, OSError):
        where = f' ({error.filename})' if error.filename else ''
        return SlaposError(
            Faults.FILE_ERROR, f'{error.strerror or error}{where}'
        )
    return RPCError(
        SupervisorFaults.FAILED,
        f'{type(error).__name__}: {error} (see supervisord log)',
    )


@contextlib.contextmanager
def file_errors_as_faults():
    """Raise an OSError of the block as its FILE_ERROR fault: supervisord
    answers any exception that is no RPCError with an HTTP 500."""
    try:
        yield
    except OSError as error:
        raise as_fault(error) from error
