"""Fabric and invoke adapter: runs Fabric tasks over the transport (see the Fabric issue)."""
