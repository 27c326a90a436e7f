"""Run the processes of a SlapOS node inside supervisord.

Three parts, each in its own process:

- inside supervisord, the RPC interface ``slapos``
  (:mod:`supervisor_slapos.rpcinterface`, with ``pluginconfig``,
  ``naming``, ``partitionconf``, ``scopedapply``, ``groupapply``, ``jobs``,
  ``clients`` and ``linearread``);
- in supervisorctl, the plugin ``supervisorctl slapos``
  (:mod:`supervisor_slapos.controllerplugin`, with ``faults`` only);
- in its own process, the event listener ``supervisor-slapos-listener``
  (:mod:`supervisor_slapos.listener`, with ``eventloop``, ``schedule``,
  ``syncpass``, ``reportedstates``, ``formatreport`` and ``master``).

``supervisor-slapos-setup`` (:mod:`supervisor_slapos.nodesetup`) installs
them on a node slapgrid runs. README.rst has the whole story.
"""
