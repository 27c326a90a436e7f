"""Run the processes of a SlapOS node inside supervisord.

The package has three parts, each loaded by supervisord: an RPC interface
(:mod:`supervisor_slapos.rpcinterface`), a supervisorctl plugin
(:mod:`supervisor_slapos.controllerplugin`) and an event listener
(:mod:`supervisor_slapos.listener`).
"""
