"""Functions the benchmarks run on targets (imported by name by every system)."""


def render(template, **values):
    import jinja2

    return jinja2.Template(template).render(**values)
