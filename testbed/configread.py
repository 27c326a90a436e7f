"""supervisord's configuration read in-process, with supervisor's own
``ServerOptions``: what a read yields, as supervisor compares it, and what
``reloadConfig`` would answer after it.
"""

import time
import types
from pathlib import Path

import supervisor.options
from supervisor.options import ServerOptions
from supervisor.supervisord import Supervisor

from supervisor_slapos import internals
from testbed.polling import wait_until


def server_options(main, plain=False):
    """A ``ServerOptions`` for the configuration file ``main``; with
    ``plain``, its reads are supervisor's own (``read_config`` and
    parser), whatever is installed."""
    options = ServerOptions()
    options.configfile = str(main)
    if plain:

        def read_config(self, fp):
            kept = supervisor.options.UnhosedConfigParser
            supervisor.options.UnhosedConfigParser = internals.PLAIN_PARSER
            try:
                return internals.PLAIN_READ_CONFIG(self, fp)
            finally:
                supervisor.options.UnhosedConfigParser = kept

        options.read_config = types.MethodType(read_config, options)
    return options


class ActiveNode:
    """A supervisord's view of one ``ServerOptions``: ``reload()`` reads
    the configuration as ``reloadConfig`` does and applies the answer as
    ``supervisorctl update`` would (groups are configs only: no process
    is started)."""

    def __init__(self, options):
        self.options = options
        self.supervisord = Supervisor(options)

    def reload(self):
        """('error', text) or (added, changed, removed, state): the state
        of the read, before the groups it adds are given AUTO log names."""
        try:
            self.options.process_config(do_usage=False)
        except ValueError as e:
            return 'error', str(e)
        state = read_state(self.options)
        added, changed, removed = self.supervisord.diff_to_active()
        groups = self.supervisord.process_groups
        for config in changed + removed:
            del groups[config.name]
        for config in added + changed:
            self.supervisord.add_process_group(config)
        return (
            [c.name for c in added],
            [c.name for c in changed],
            [c.name for c in removed],
            state,
        )


def read_state(options):
    """What a read left in ``options``, comparable between two options
    objects: the group configs (every field, AUTO log names as they
    are), the [supervisord] section, parse messages (warnings as a
    multiset)."""
    section = options.configroot.supervisord
    return {
        'groups': [
            config_state(group) for group in options.process_group_configs
        ],
        'supervisord': {
            name: value
            for name, value in vars(section).items()
            if name not in ('process_group_configs', 'rpcinterface_factories')
        },
        'rpcinterfaces': [
            (name, kwargs)
            for name, _, kwargs in section.rpcinterface_factories
        ],
        'infos': options.parse_infos,
        'warnings': sorted(options.parse_warnings),
        'environ_expansions': options.environ_expansions,
    }


def config_state(config):
    """Every field of a group config and of its process configs, but the
    options object they point to."""
    state = {
        name: value
        for name, value in vars(config).items()
        if name not in ('options', 'process_configs')
    }
    state['type'] = type(config).__name__
    state['processes'] = [
        dict(
            {
                name: value
                for name, value in vars(process).items()
                if name != 'options'
            },
            type=type(process).__name__,
        )
        for process in config.process_configs
    ]
    return state


def wait_files_older_than(directory, seconds, timeout=60):
    """Until every file in ``directory`` was last changed (mtime and
    ctime) more than ``seconds`` ago."""

    def old_enough():
        newest = max(
            (
                max(p.stat().st_mtime, p.stat().st_ctime)
                for p in Path(directory).iterdir()
            ),
            default=0,
        )
        return time.time() - newest > seconds

    wait_until(
        old_enough,
        timeout,
        interval=0.1,
        what=f'the files of {directory} older than {seconds} s',
    )
