"""Sphinx configuration of supervisor_slapos's documentation (make docs)."""

import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))

with open(
    os.path.join(here, '..', 'supervisor_slapos', '__init__.py'),
    encoding='utf-8',
) as f:
    release = re.search(r"^__version__ = '([^']+)'$", f.read(), re.M).group(1)
version = release

project = 'supervisor_slapos'
author = 'the supervisor_slapos authors'
copyright = '2026, ' + author

extensions = ['sphinx.ext.autodoc']
autodoc_member_order = 'bysource'
exclude_patterns = ['_build']
html_theme = 'alabaster'


def supervisor_docstring_fields(app, what, name, obj, options, lines):
    """supervisor's ``@param type name text`` and ``@return type text``
    lines (continuation lines indented) as Sphinx fields."""
    out = []
    for line in lines:
        words = line.split()
        if words[:1] == ['@param'] and len(words) >= 3:
            out.append(f':param {words[1]} {words[2]}: ' + ' '.join(words[3:]))
        elif words[:1] == ['@return'] and len(words) >= 2:
            out.append(f':rtype: {words[1]}')
            out.append(':returns: ' + ' '.join(words[2:]))
        elif out and out[-1].startswith((':param', ':returns:')) and words:
            out[-1] += ' ' + ' '.join(words)  # a continuation line
        else:
            out.append(line.strip() if out and not words else line)
    lines[:] = out


def setup(app):
    app.connect('autodoc-process-docstring', supervisor_docstring_fields)
