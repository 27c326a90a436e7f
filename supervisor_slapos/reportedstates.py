"""The states the master accepted, per instance, kept in ``state_dir``.

A listener restart or a supervisord reload (which restarts the listener,
possibly in the middle of a sync) must re-report nothing that the master
already accepted: each accepted report is written at once.
"""

import os

from supervisor_slapos.files import read_json
from supervisor_slapos.master import REPORTED_STATES
from supervisor_slapos.syncstate import write_state_file

REPORTED_STATES_FILE = 'reported-states.json'


class ReportedStates:
    """``{instance_guid: state}`` as last accepted by the master.

    ``load()`` and the writes raise nothing: a file that cannot be read is
    a fresh start (and reported on ``logger``), one that cannot be written
    is logged and kept in memory.
    """

    def __init__(self, state_dir, logger):
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, REPORTED_STATES_FILE)
        self.logger = logger
        self.states = {}

    def load(self):
        try:
            raw = read_json(self.path)
        except (OSError, ValueError) as exc:
            self.logger.warning('ignoring unreadable %s: %s', self.path, exc)
            raw = {}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.logger.warning('ignoring malformed %s', self.path)
            raw = {}
        self.states = {
            guid: state
            for guid, state in raw.items()
            if isinstance(guid, str) and state in REPORTED_STATES
        }
        return self

    def get(self, guid):
        return self.states.get(guid)

    def accepted(self, guid, state):
        """The master accepted ``state`` for ``guid``: write it now."""
        if self.states.get(guid) != state:
            self.states[guid] = state
            self._save()

    def forget(self, guids):
        """Drop ``guids`` (destroyed or no longer listed instances)."""
        gone = [guid for guid in guids if guid in self.states]
        for guid in gone:
            del self.states[guid]
        if gone:
            self._save()

    def keep_only(self, listed):
        """Forget every instance not in ``listed``."""
        self.forget([guid for guid in self.states if guid not in listed])

    def _save(self):
        try:
            write_state_file(self.state_dir, REPORTED_STATES_FILE, self.states)
        except OSError as exc:
            self.logger.error('cannot save %s: %s', self.path, exc)
