"""Connection methods: how a context is started (local child, ssh, sudo, su).

Each method builds the command line that ends in the first-stage bootstrap
and turns a failed start into the right ConnectError subclass. The core's
spawn module runs what they build; only the paramiko backend of ssh does I/O
itself (it connects in-process, in start_process).
"""
