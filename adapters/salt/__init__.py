"""salt-ssh adapter: a roster key that runs Salt over the transport.

    web1:
      host: 10.0.0.5
      transport: fast          # or {kind: fast, python: /usr/bin/python3}

Installed as a Salt extension (entry point in the `salt.loader` group), whose
import installs the hooks (adapters.salt.hooks). This package itself imports
nothing: its `remote` subpackage is forwarded to targets.
"""
