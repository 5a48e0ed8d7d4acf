"""Well-known message handles and header flags: the protocol's vocabulary.

docs/protocol.md documents each of these; a test checks that the document and
this module agree, so change both together.
"""
from __future__ import absolute_import

# Header flags.
FLAG_DEAD = 0x0001      # the receiver named by the message is gone; data is the reason (UTF-8)

# Well-known handles, the same in every context.
BOOT_CONFIG = 1         # parent -> new child, right after the payload: ids, limits, hello handle
CALL_FUNCTION = 2       # parent side -> context: run a function, reply to reply_to
SHUTDOWN = 3            # parent side -> context: finish and exit
ADD_ROUTE = 4           # parent -> context: a new context is reachable through one of your children
DEL_ROUTE = 5           # child -> parent: these contexts are gone
CONNECT = 6             # parent side -> context: start a child context from here
GET_MODULE = 7          # child -> parent: send me this module (and what it imports)
LOAD_MODULE = 8         # parent -> child: modules, unasked (preload)
FORWARD_MODULE = 9      # parent -> intermediary: cache these modules and pass them to a context
GET_RESOURCE = 10       # context -> controller: a data file of a package it was sent
SIGNAL_COMMANDS = 11    # parent side -> context: signal the commands running there now

# Handles allocated at run time (reply handles) start here.
FIRST_DYNAMIC_HANDLE = 1000

# The context id of the controller; targets get ids from 1 up.
CONTROLLER_ID = 0

WELL_KNOWN = {
    'BOOT_CONFIG': BOOT_CONFIG,
    'CALL_FUNCTION': CALL_FUNCTION,
    'SHUTDOWN': SHUTDOWN,
    'ADD_ROUTE': ADD_ROUTE,
    'DEL_ROUTE': DEL_ROUTE,
    'CONNECT': CONNECT,
    'GET_MODULE': GET_MODULE,
    'LOAD_MODULE': LOAD_MODULE,
    'FORWARD_MODULE': FORWARD_MODULE,
    'GET_RESOURCE': GET_RESOURCE,
    'SIGNAL_COMMANDS': SIGNAL_COMMANDS,
}
