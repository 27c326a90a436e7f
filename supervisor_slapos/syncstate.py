"""What the listener last knew about the master, kept in ``state_dir``.

The listener writes it after every attempt to reach the master; the RPC
interface reads it for ``getSyncState()``. Both go through this module so
the file format lives in one place.
"""

import os
from dataclasses import asdict, dataclass, fields

from supervisor_slapos.files import make_dirs_durable, read_json, write_json

SYNC_STATE_FILE = 'sync-state.json'
MODES = ('online', 'offline', 'unknown')
# What a listener beside slapgrid records (as ``last_error``, mode
# ``unknown``) when it has no format report to send: then it never
# contacts the master, and nothing it records says how the master is.
NO_CONTACT_BESIDE_SLAPGRID = (
    'beside slapgrid without computer_json (or master_url) the listener '
    'never contacts the master: slapgrid does (see its log)'
)


@dataclass(frozen=True)
class SyncState:
    mode: str = 'unknown'
    master_url: str = ''
    last_attempt: float = 0.0
    last_success: float = 0.0
    last_error: str = ''

    def as_dict(self):
        return asdict(self)


def _coerce(raw):
    """Build a SyncState from decoded JSON, falling back field by field."""
    default = SyncState()
    values = {}
    for field in fields(SyncState):
        value = raw.get(field.name, getattr(default, field.name))
        if field.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(
                value, bool
            )
            values[field.name] = float(value) if ok else 0.0
        else:
            values[field.name] = value if isinstance(value, str) else ''
    if values['mode'] not in MODES:
        values['mode'] = 'unknown'
    return SyncState(**values)


def read_sync_state(state_dir):
    """The last recorded state; ``mode='unknown'`` when none is readable."""
    try:
        raw = read_json(os.path.join(state_dir, SYNC_STATE_FILE))
    except (OSError, ValueError):
        return SyncState()
    return _coerce(raw) if isinstance(raw, dict) else SyncState()


def write_state_file(state_dir, name, value):
    """Write ``value`` as JSON to ``state_dir/name``, atomically. A
    ``state_dir`` removed meanwhile is made again first (durably): the
    listener's every state write goes through here."""
    make_dirs_durable(state_dir)
    write_json(os.path.join(state_dir, name), value)


def write_sync_state(state_dir, state):
    write_state_file(state_dir, SYNC_STATE_FILE, state.as_dict())
