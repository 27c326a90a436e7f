import os
import re

from setuptools import find_packages, setup

here = os.path.abspath(os.path.dirname(__file__))


def read(name):
    with open(os.path.join(here, name), encoding='utf-8') as f:
        return f.read()


# One version, in the package (supervisord's log and --version show it).
version = re.search(
    r"^__version__ = '([^']+)'$", read('supervisor_slapos/__init__.py'), re.M
).group(1)
long_description = read('README.rst') + '\n\n' + read('CHANGES.rst')

docs_require = ['sphinx']

tests_require = [
    'pytest',
    'pytest-timeout',
    'build',
    'twine',
    'hypothesis',
    'slapos.core',
    'slapos.libnetworkcache',
    # the power-loss test's FUSE filesystem (tests/powerloss_fs.py), over
    # the system's libfuse 3, which .ci/run installs
    'mfusepy',
    # the linter and formatter (ruff.toml); make test runs ruff check first
    'ruff',
]

setup(
    name='supervisor_slapos',
    version=version,
    description='Run the processes of a SlapOS node inside supervisord: '
    'scoped partition apply, offline start, master sync',
    long_description=long_description,
    long_description_content_type='text/x-rst',
    author='the supervisor_slapos authors',
    license='BSD-derived (http://www.repoze.org/LICENSE.txt)',
    license_files=['LICENSE.txt'],
    keywords='slapos supervisor supervisord plugin rpcinterface '
    'eventlistener slapgrid',
    project_urls={
        'SlapOS': 'https://slapos.nexedi.com',
        'slapos.core (slapgrid)': 'https://pypi.org/project/slapos.core/',
        'Supervisor': 'http://supervisord.org',
    },
    packages=find_packages(exclude=['tests', 'tests.*', 'testbed', 'bench']),
    python_requires='>=3.9',
    install_requires=['supervisor>=4.2', 'setuptools', 'requests'],
    extras_require={'test': tests_require, 'docs': docs_require},
    entry_points={
        'console_scripts': [
            'supervisor-slapos-listener = supervisor_slapos.listenercli:main',
            'supervisor-slapos-setup = supervisor_slapos.nodesetup:main',
            'supervisor-slapos-supervisord = '
            'supervisor_slapos.linearstart:main',
        ],
    },
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Environment :: No Input/Output (Daemon)',
        'Intended Audience :: System Administrators',
        'Operating System :: POSIX :: Linux',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3 :: Only',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Programming Language :: Python :: 3.13',
        'Topic :: System :: Boot',
        'Topic :: System :: Monitoring',
        'Topic :: System :: Systems Administration',
    ],
    zip_safe=False,
)
