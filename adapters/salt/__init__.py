"""salt-ssh adapter: a roster option that runs Salt over the transport (see the Salt issue)."""
