import os

from setuptools import find_packages, setup

here = os.path.abspath(os.path.dirname(__file__))
with open(os.path.join(here, 'README.rst'), encoding='utf-8') as f:
    long_description = f.read()

tests_require = [
    'pytest',
    'pytest-timeout',
    'build',
    'twine',
    'hypothesis',
    'slapos.core',
    'slapos.libnetworkcache',
]

setup(
    name='supervisor_slapos',
    version='0.1.0',
    description='Run the processes of a SlapOS node inside supervisord: '
                'scoped partition apply, offline start, master sync',
    long_description=long_description,
    long_description_content_type='text/x-rst',
    license='BSD-derived (http://www.repoze.org/LICENSE.txt)',
    keywords='slapos supervisor supervisord plugin rpcinterface '
             'eventlistener slapgrid',
    project_urls={
        'SlapOS': 'https://slapos.nexedi.com',
        'slapos.core (slapgrid)': 'https://pypi.org/project/slapos.core/',
        'Supervisor': 'http://supervisord.org',
    },
    packages=find_packages(exclude=['tests', 'tests.*', 'bench']),
    python_requires='>=3.9',
    install_requires=['supervisor>=4.2', 'setuptools', 'requests'],
    extras_require={'test': tests_require},
    entry_points={
        'console_scripts': [
            'supervisor-slapos-listener = supervisor_slapos.listener:main',
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
