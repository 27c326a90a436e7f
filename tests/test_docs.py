"""The documentation agrees with itself: what a reader copies from the
README and from docs/ is the same."""

import re
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def listener_section(path):
    """The ``[eventlistener:slapos]`` example of a documentation file."""
    text = (TOP / path).read_text()
    [block] = re.findall(
        r'\n    \[eventlistener:slapos\]\n(?:    .*\n)+', text
    )
    return block.strip()


def test_the_listener_examples_are_one_section():
    readme = listener_section('README.rst')
    assert listener_section('docs/listener.rst') == readme
    # named by its absolute path, its log in a file of its own
    assert re.search(
        r'^    command = /\S+/supervisor-slapos-listener$', readme, re.M
    )
    assert 'stderr_logfile = /' in readme


def test_no_reference_to_a_file_users_do_not_have():
    for path in [TOP / 'README.rst', *sorted((TOP / 'docs').glob('*.rst'))]:
        assert 'SPEC' not in path.read_text(), path


def package_modules():
    """The modules of the package, as their files say."""
    return sorted(
        path.stem
        for path in (TOP / 'supervisor_slapos').glob('*.py')
        if path.stem != '__init__'
    )


def test_every_module_is_in_both_module_maps():
    import supervisor_slapos

    in_docstring = set(
        re.findall(
            r'``(\w+)``|supervisor_slapos\.(\w+)`', supervisor_slapos.__doc__
        )
    )
    in_docstring = {a or b for a, b in in_docstring}
    design = (TOP / 'docs' / 'design.rst').read_text()
    start = design.index('The code, one module per concern')
    section = design[start : design.index('\nNode files\n', start)]
    in_design = set(re.findall(r'``(\w+)\.py``', section))
    modules = package_modules()
    assert [m for m in modules if m not in in_docstring] == []
    assert [m for m in modules if m not in in_design] == []
