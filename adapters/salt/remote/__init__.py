"""The parts of the salt adapter that run on targets (standard library and Salt only)."""
