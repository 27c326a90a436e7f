"""The real parts that the tests (tests/) and the benchmarks (bench/) both
run against, in one place: a supervisord node with or without the plugin
(``node``), a ``slapos proxy`` master behind a fault-injecting front and the
PKI for its TLS (``slapos_master``), a slapgrid node built from slapos.core's
own code (``slapgrid_node``), the listener's fakes (``listener_fakes``),
what is read from ``/proc`` (``proc``) and the one way to wait for a state
(``polling``).

Not shipped in the wheel; the sdist carries it beside tests/ and bench/.
"""
