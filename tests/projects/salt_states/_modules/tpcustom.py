"""A custom execution module in the state tree's _modules, as Salt users write them."""


def hello(name="world"):
    return f"hello {name} from a custom module"
