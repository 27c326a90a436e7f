"""supervisord's full configuration read, linear in the number of files.

``ServerOptions.read_config`` (behind ``reloadConfig``, ``update``,
``reread`` and every reload) reads each include file into one
``UnhosedConfigParser``, and after each file the work grows with all the
sections read so far: configparser joins the multi-line values of every
section, ``UnhosedConfigParser.read`` copies the section table to find the
new sections, and ``expand_here`` walks every option of every section.
With N include files that is quadratic.

``LinearConfigParser`` gives the same parser state and errors, doing only
the work of the file just read:

- each file is parsed by configparser's own ``_read`` into empty section
  tables, then merged in (an option of a section that is already there
  replaces its value in place, as configparser does), so only the new
  file's values are joined;
- the parser remembers which sections may hold ``%(here)s`` (those read or
  set since the last ``expand_here``, and those a previous expansion left
  one in), and ``expand_here`` walks only those; a ``[DEFAULT]`` value
  holding ``%(here)s`` reaches every section, so then it walks all of them,
  as supervisor does.

``install`` puts it where ``read_config`` looks the class up
(``supervisor.options.UnhosedConfigParser``, through
``internals.install_parser``) when the installed supervisor is one whose
parser it was checked against; otherwise it leaves the plain class in
place.
"""

import configparser

import supervisor.options

from supervisor_slapos.internals import PLAIN_PARSER, install_parser

HERE = '%(here)s'
OPTION = 'linear_reread'

PLAIN = PLAIN_PARSER
NO_DEFAULT = getattr(supervisor.options, '_marker', object())


class LinearConfigParser(PLAIN):
    """``UnhosedConfigParser`` whose reads cost the size of what is read."""

    def __init__(self, *args, **kwargs):
        # before configparser's __init__, whose defaults go through set()
        self._here_pending = set()
        self._added_by_read = []
        super().__init__(*args, **kwargs)

    def read(self, filenames, **kwargs):
        """As ``UnhosedConfigParser.read``: also maps each section a file
        added to that file (``section_to_file``)."""
        if isinstance(filenames, str):
            filenames = [filenames]
        read_ok = []
        for filename in filenames:
            self._added_by_read = []
            read_ok.extend(
                configparser.RawConfigParser.read(self, [filename], **kwargs)
            )
            for section in self._added_by_read:
                self.section_to_file[section] = filename
        return read_ok

    def _read(self, fp, fpname):
        if not _interpolation_keeps_values(self):
            return self._read_everything(fp, fpname)
        kept = (self._sections, self._defaults, self._proxies)
        self._sections, self._defaults, self._proxies = (
            self._dict(),
            self._dict(),
            self._dict(),
        )
        try:
            return super()._read(fp, fpname)
        finally:
            read = (self._sections, self._defaults, self._proxies)
            self._sections, self._defaults, self._proxies = kept
            self._merge(*read)

    def _read_everything(self, fp, fpname):
        """configparser's own read, which joins every section again."""
        before = set(self._sections)
        try:
            return super()._read(fp, fpname)
        finally:
            self._added_by_read = [
                name for name in self._sections if name not in before
            ]
            self._here_pending.update(self._sections)

    def _merge(self, sections, defaults, proxies):
        """Add what one ``_read`` found, as configparser would have."""
        self._defaults.update(defaults)
        added = []
        for name, options in sections.items():
            if name in self._sections:
                self._sections[name].update(options)
            else:
                self._sections[name] = options
                self._proxies[name] = proxies[name]
                added.append(name)
        self._added_by_read = added
        self._here_pending.update(sections)

    def set(self, section, option, value=None):
        super().set(section, option, value)
        if isinstance(value, str) and HERE in value:
            self._here_pending.add(section)

    def sections(self):
        return SectionNames(self._sections)

    def saneget(
        self,
        section,
        option,
        default=NO_DEFAULT,
        do_expand=True,
        expansions=None,
    ):
        # Expanding builds a dict of every ENV_ name; a value without '%'
        # comes out of the expansion unchanged.
        value = self._plain_value(section, option, default)
        if value is NO_DEFAULT:
            value = super().saneget(section, option, default, do_expand=False)
        if do_expand and isinstance(value, str) and '%' in value:
            return super().saneget(
                section, option, default, True, expansions or {}
            )
        return value

    def _plain_value(self, section, option, default):
        """What ``get`` would give for an option of an existing section,
        without its per-call ChainMap; NO_DEFAULT when only ``get`` itself
        can tell (another interpolation or option spelling, no section, an
        error to raise)."""
        if not _plain_lookup(self) or section not in self._sections:
            return NO_DEFAULT
        key = self.optionxform(option)
        for options in (self._sections[section], self._defaults):
            if key in options:
                return options[key]
        return default

    def expand_here(self, here):
        """As ``UnhosedConfigParser.expand_here``: replace ``%(here)s`` by
        ``here`` in every option of every section."""
        pending, self._here_pending = self._here_pending, set()
        if any(
            isinstance(value, str) and HERE in value
            for value in self._defaults.values()
        ):
            return super().expand_here(here)
        for section in pending:
            if section in self._sections:
                self._expand_section(section, here)

    def _expand_section(self, section, here):
        for option, value in self.items(section):
            if HERE in value:
                assert here is not None, 'here has not been set to a path'
                self.set(section, option, value.replace(HERE, here))


def _plain_lookup(parser):
    """``get`` returns the stored value as it is: configparser's plain
    interpolation (supervisor's parser)."""
    return (
        type(parser._interpolation).before_get
        is configparser.Interpolation.before_get
    )


def _interpolation_keeps_values(parser):
    """Joining values again is a no-op only when the interpolation leaves
    values as read (supervisor's parser: configparser's plain one)."""
    return (
        type(parser._interpolation).before_read
        is configparser.Interpolation.before_read
    )


def install(enable):
    """Make supervisord's next full reads linear (or plain again, when
    ``enable`` is false); see ``internals.install_parser``. Returns what
    it did, for supervisord's log."""
    return install_parser(LinearConfigParser, enable, f'{OPTION} = false')


class SectionNames(list):
    """``parser.sections()``: a list whose ``in`` is a set look-up
    (``process_groups_from_parser`` asks it twice per program)."""

    def __init__(self, names=()):
        super().__init__(names)
        self._index = None

    def __contains__(self, name):
        if self._index is None:
            self._index = set(self)
        return name in self._index


def _forgetting_index(method):
    def changed(self, *args):
        self._index = None
        return method(self, *args)

    changed.__name__ = method.__name__
    return changed


for _name in (
    '__setitem__',
    '__delitem__',
    '__iadd__',
    '__imul__',
    'append',
    'extend',
    'insert',
    'remove',
    'pop',
    'clear',
):
    setattr(SectionNames, _name, _forgetting_index(getattr(list, _name)))
