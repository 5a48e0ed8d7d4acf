"""Connection methods: how a context is started (local child, ssh, sudo, su).

Each method builds the command line that ends in the first-stage bootstrap
and turns a failed start into the right ConnectError subclass. Methods hold
no I/O: the core's spawn module runs what they build.
"""
