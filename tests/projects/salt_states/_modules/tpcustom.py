"""A custom execution module in the state tree's _modules, as Salt users write them."""


def hello(name="world"):
    return f"hello {name} from a custom module"


def extra_module():
    """A module the master config's thin_extra_mods ships (the targets do not have it)."""
    import iniconfig

    return iniconfig.__name__


def die(code=3):
    """A function that ends its process, as os._exit in third-party code does."""
    import os

    os._exit(int(code))
