"""The node's configuration as supervisord reads it: what its
``[include]`` reads, and the names the node (not a partition) declares.
"""

import configparser
import glob
import os
import platform
from dataclasses import dataclass

from supervisor_slapos.declarations import cached_names
from supervisor_slapos.internals import PLAIN_PARSER
from supervisor_slapos.ownership import Ownership


@dataclass(frozen=True)
class Includes:
    """What the ``[include]`` section of a configuration file reads."""

    patterns: tuple  # absolute patterns

    def files(self):
        """The files the patterns match now, in supervisord's order."""
        return [f for p in self.patterns for f in sorted(glob.glob(p))]

    def directories(self):
        return {os.path.realpath(os.path.dirname(p)) for p in self.patterns}


def read_includes(configfile, expansions):
    """The ``[include]`` of ``configfile``, read as supervisord reads it."""
    here = os.path.dirname(os.path.abspath(configfile))
    parser = PLAIN_PARSER()
    try:
        parser.read(configfile)
        parser.expand_here(here)
        text = parser.saneget(
            'include',
            'files',
            '',
            expansions=dict(
                expansions, here=here, host_node_name=platform.node()
            ),
        )
    except (configparser.Error, ValueError):
        text = ''  # supervisord itself reports a broken configuration
    patterns = tuple(os.path.join(here, p) for p in text.split())
    return Includes(patterns)


class NodeConfig:
    """The names the node declares: its main configuration file
    ``configfile`` and every file its ``[include]`` reads but the
    partitions' files of ``include_dir`` (each read again only when it
    changed: ``declarations.cached_names``)."""

    def __init__(
        self, configfile, expansions, include_dir, ownership=Ownership()
    ):
        self.configfile = configfile
        self.expansions = expansions or {}
        self.include_dir = include_dir
        self.ownership = ownership
        self._node = {}  # path of a node file -> (stamp, names)

    def names(self):
        """The names the node declares. A loaded group of such a name
        that no file of its partition declares is the node's; one that no
        file declares at all (its partition's file is gone) is still its
        partition's, to be removed."""
        if self.configfile is None:
            return frozenset()
        include_dir = os.path.realpath(self.include_dir)
        real_dirs = {}  # one realpath per directory, not per file
        names, paths = set(), set()
        includes = read_includes(self.configfile, self.expansions)
        for path in (self.configfile, *includes.files()):
            directory = os.path.dirname(path)
            if directory not in real_dirs:
                real_dirs[directory] = os.path.realpath(directory)
            if real_dirs[directory] == include_dir and (
                self.ownership.file_owner(os.path.basename(path)) is not None
            ):
                continue  # a partition's file
            paths.add(path)
            names.update(cached_names(self._node, path, path))
        for gone in set(self._node) - paths:
            del self._node[gone]
        return names
