"""Run the processes of a SlapOS node inside supervisord.

Three parts, each in its own process:

- inside supervisord, the RPC interface ``slapos``
  (:mod:`supervisor_slapos.rpcinterface`, which checks and submits the
  ``operations``, built from ``pluginconfig``, ``naming``, ``ownership``,
  ``declarations``, ``nodeconfig``, ``partitionview``, ``partitionconf``,
  ``partitionparse``, ``groupapply``, ``floorspawn``, ``jobs``,
  ``clients``, ``linearread``, ``incrementalread``, ``descriptors`` and
  ``offlinestart``);
- in supervisorctl, the plugin ``supervisorctl slapos``
  (:mod:`supervisor_slapos.controllerplugin`, with ``faults``,
  ``syncstate``, ``internals``, and ``nodecheck`` for ``check``);
- in its own process, the event listener ``supervisor-slapos-listener``
  (:mod:`supervisor_slapos.listener`, with ``listenerpolicy``,
  ``listeneractions``, ``listenercli``, ``eventloop``, ``schedule``,
  ``syncpass``, ``reportedstates``, ``formatreport``, ``master`` and
  ``addresses``).

``supervisor-slapos-setup`` (:mod:`supervisor_slapos.nodesetup`) installs
them on a node slapgrid runs; ``supervisor-slapos-supervisord``
(:mod:`supervisor_slapos.linearstart`) is supervisord with its first
configuration read linear. Shared by the parts: ``files`` (atomic
writes), ``faults`` (the fault codes), ``startresults`` (a start's
results in words), ``syncstate`` (what the listener last knew),
``setuprecord`` (where the setup wrote), ``slaposcfg`` (the
``slapos.cfg`` keys) and ``internals`` (the uses of supervisor's
internals, each guarded). README.rst and docs/ have the whole story.
"""

# The package's version (setup.py reads it here): supervisord's log says
# it when the plugin loads, the commands' --version and "help slapos" too.
__version__ = '0.1.0'

# The factories supervisord's configuration names (setup writes them).
RPC_FACTORY = 'supervisor_slapos.rpcinterface:make_slapos_rpcinterface'
CTL_FACTORY = 'supervisor_slapos.controllerplugin:make_slapos_controllerplugin'
