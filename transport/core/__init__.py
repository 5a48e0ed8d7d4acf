"""The shipped core: the part of transport that travels to every target.

Standard library only, and written in the syntax shared by Python 2.7 and
3.6+. One job per module:

- compat: Python 2/3 differences.
- handles: well-known message handles and header flags.
- codec: safe encoding of payload values.
- framing: message headers and the byte-stream decoder (sans-I/O).
- handshake: finding the start of the framed stream in a child's output (sans-I/O).
- poller, poller_*: the kernel readiness APIs behind one interface.
- broker: the event-loop thread, timers and cross-thread deferral.
- stream: a framed connection over a pair of file descriptors.
- router: delivery and routing of messages between contexts.
- dispatch: running the functions that calls name.
- spawn: starting child processes and booting the core in them.
- main: the entry point of a booted target.
"""
