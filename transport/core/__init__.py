"""The shipped core: the part of transport that travels to every target.

Standard library only, and written in the syntax shared by Python 2.7 and
3.6+. One job per module:

- compat: Python 2/3 differences.
- handles: well-known message handles and header flags.
- codec: safe encoding of payload values.
- framing: message headers and the byte-stream decoder (sans-I/O).
- poller, poller_*: the kernel readiness APIs behind one interface.
- broker: the event-loop thread, timers and cross-thread deferral.
- stream: a framed connection over a pair of file descriptors.
- router: delivery and routing of messages between contexts.
- importer: the in-memory importer of the core's own modules (installed first).
- forwarding: importing modules from the parent (GET_MODULE), cached for children.
- dispatch: running the functions that calls name.
- fresh: making each call start as a fresh process would (resolver, cwd, environment).
- main: the entry point of a booted target.

On demand (sent when first needed, not in the boot payload):

- spawn: starting child processes and booting the core in them (intermediaries).
- handshake: finding the start of the framed stream in a child's output (sans-I/O).
- commands: running commands with streamed output.
- files: file transfer.
- jobs: detached calls.
- logs: forwarding log records to the controller.
- resources: forwarded packages' data files (GET_RESOURCE).
- tunnels: port forwarding (TCP tunnels joined by messages).
- os_strings: text for the operating system on any target Python (paths, arguments).
- baseline: moving the working directory and environment each call starts from.
- preloading: checking which preloaded modules a context does not have.
- asking: asking another context a question from inside a call.
- relaying: an intermediary serving its children's imports from its cache.
- stdio: keeping the target's stderr from the processes its calls start.
"""
