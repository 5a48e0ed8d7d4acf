"""Module forwarding: targets import the caller's own modules on demand."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

import transport
from tests.support.interpreters import find_interpreters
from tests.support.packages import importable_tree
from transport.modules import ModuleFinder

PACKAGE = {
    "fwdpkg/__init__.py": "from . import helpers\nVERSION = '1.0'\n",
    "fwdpkg/helpers.py": textwrap.dedent("""
        import fwddep
        from fwdpkg import sub


        def use_dep(x):
            return fwddep.double(x) + sub.ONE - 1


        def speedups_or_fallback():
            try:
                from fwdpkg import _speedups
                return "speedups"
            except ImportError:
                return "fallback"


        def lazy():
            import fwdlazy
            return fwdlazy.VALUE


        def where():
            return __file__


        def shadowed_version():
            import fwdshadow
            return fwdshadow.WHO


        def fail():
            raise RuntimeError("from a forwarded module")


        def import_by_name_locally_only(name):
            import importlib
            from transport.core import forwarding
            with forwarding.local_imports_only():
                try:
                    importlib.import_module(name)
                    return "imported"
                except ImportError:
                    return "not on this host"
    """),
    "fwdpkg/sub.py": "ONE = 1\n",
    "fwddep.py": "def double(x):\n    return 2 * x\n",
    "fwdlazy.py": "VALUE = 'lazy'\n",
    "fwdextra.py": "VALUE = 'extra'\n",
    "fwdshadow.py": "WHO = 'controller'\n",
    # Python 2 code: an implicit relative import of a sibling (the controller, on
    # Python 3, never imports it; it only finds and scans it).
    "fwdpy2/__init__.py": "import os\nimport sibling\n\n\ndef value():\n"
                          "    return sibling.Y + len(os.sep)\n",
    "fwdpy2/sibling.py": "Y = 100\n",
    # Python 2 code raising an error whose text is UTF-8 bytes (a native str).
    "fwdpy2text.py": "# -*- coding: utf-8 -*-\n\n\ndef fail():\n"
                     "    raise ValueError('\u00e9chec: d\u00e9p\u00f4t')\n\n\n"
                     "def fail_with_text():\n    raise ValueError(u'\u00e9t\u00e9')\n\n\n"
                     "def fail_on_the_broker():\n"
                     "    from transport.core import dispatch\n"
                     "    dispatch.current.router.broker.defer(fail)\n",
    # A package with data files beside its modules, read as packages read them.
    "fwdres/__init__.py": textwrap.dedent("""
        import pkgutil


        def by_pkgutil(name):
            return pkgutil.get_data(__name__, name)


        def by_path(name):
            import importlib.resources
            with importlib.resources.path(__name__, name) as path:
                with open(str(path), "rb") as f:
                    return f.read()


        def by_files(*parts):
            import importlib.resources
            top = importlib.resources.files(__name__)
            node = top.joinpath(*parts)
            with importlib.resources.as_file(node) as path:
                with open(str(path), "rb") as f:
                    on_disk = f.read()
            return (sorted(entry.name for entry in top.iterdir()), node.is_file(),
                    node.read_bytes(), on_disk)
    """),
    "fwdres/blob.bin": "blob\n",
    # Plugins found by listing the package, as plugin registries find theirs.
    "fwdplug/__init__.py": textwrap.dedent("""
        import pkgutil


        def listed():
            return ([(name, is_package) for _, name, is_package in pkgutil.iter_modules(__path__)],
                    sorted(name for _, name, _ in pkgutil.walk_packages(__path__, __name__ + ".")))
    """),
    "fwdplug/alpha.py": "",
    "fwdplug/beta/__init__.py": "",
    "fwdplug/beta/gamma.py": "",
    "fwdplug/notes/readme.txt": "a directory, not a package\n",
    "fwdplug/data.txt": "",
    "fwdres/data/greeting.txt": "hello\n",
    # An application's own importer, appended to sys.meta_path after the forwarder (as
    # six.moves and setuptools' vendored packages do); its name appears nowhere in source.
    "fwdlate.py": textwrap.dedent("""
        import sys

        NAME = "fwdlate_" + "virtual"


        class LateFinder(object):
            def find_spec(self, fullname, path=None, target=None):
                if fullname != NAME:
                    return None
                import importlib.util
                return importlib.util.spec_from_loader(fullname, self)

            def find_module(self, fullname, path=None):
                return self if fullname == NAME else None

            def create_module(self, spec):
                return None

            def exec_module(self, module):
                module.VALUE = "virtual"

            def load_module(self, fullname):
                module = sys.modules.setdefault(fullname, type(sys)(fullname))
                module.__loader__ = self
                module.VALUE = "virtual"
                return module


        sys.meta_path.append(LateFinder())
    """),
}


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("forwarded")
    # A C extension the controller must refuse to send (never loaded: an empty file).
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    with importable_tree(root, {**PACKAGE, f"fwdpkg/_speedups{suffix}": ""}, "fwd"):
        yield root


@pytest.fixture
def helpers(package_dir):
    return importlib.import_module("fwdpkg.helpers")


def test_the_first_call_sends_the_module_and_its_closure_ahead(router, helpers):
    ctx = router.local()
    assert ctx.call(helpers.use_dep, 21) == 42
    assert ctx.call(helpers.lazy) == "lazy"  # imported inside a function: sent ahead too
    assert router._modules.requested.get(ctx.context_id, []) == []  # not one round trip


STDLIB_SAMPLE = ["copy", "pickle", "json", "logging", "xml.etree.ElementTree", "email.utils",
                 "multiprocessing", "platform", "tempfile", "subprocess", "shutil"]


@pytest.mark.parametrize("label", sorted(find_interpreters()))
def test_the_standard_library_costs_no_round_trip(router, label):
    """What the standard library tries on import (Python 2.7's relative imports inside
    its packages, Jython's org, other platforms' modules) is never asked of the controller."""
    ctx = router.local(python=find_interpreters()[label])
    ctx.run("true")  # the first modules sent: the command module, and the probes' answers
    imported = ctx.call(eval, f"[__import__(name) and name for name in {STDLIB_SAMPLE!r}]")
    assert imported == STDLIB_SAMPLE
    assert router._modules.requested.get(ctx.context_id, []) == []


@pytest.mark.parametrize("label", sorted(find_interpreters()))
def test_importers_installed_after_the_forwarder_answer_before_the_parent_is_asked(
        router, package_dir, label):
    from tests import remote_functions as rf

    ctx = router.local(python=find_interpreters()[label])
    assert ctx.call(rf.import_by_name, "fwdlate") == "fwdlate"
    assert ctx.call(eval, "__import__('fwdlate_virtual').VALUE") == "virtual"
    assert router._modules.requested.get(ctx.context_id, []) == ["fwdlate"]


@pytest.mark.parametrize("label", sorted(find_interpreters()))
def test_python_2_relative_first_imports_in_a_package_on_the_target_cost_no_round_trip(
        router, tmp_path, label):
    (tmp_path / "diskrel").mkdir()
    (tmp_path / "diskrel" / "__init__.py").write_text("import re, pprint\nVALUE = pprint.pformat(1)\n")
    ctx = router.local(python=find_interpreters()[label])
    ctx.run("true")
    value = ctx.call(eval, f"__import__('sys').path.insert(0, {str(tmp_path)!r}) "
                           "or __import__('diskrel').VALUE")
    assert value == "1"
    assert router._modules.requested.get(ctx.context_id, []) == []


@pytest.mark.parametrize("label", sorted(find_interpreters()))
def test_forwarded_packages_read_their_data_files_from_the_controller(router, package_dir, label):
    import fwdres

    ctx = router.local(python=find_interpreters()[label])
    version = tuple(int(part) for part in ctx.python_version.split(".")[:2])
    hello = "hello\n" if version < (3,) else b"hello\n"  # a 2.7 str arrives as the caller's str
    assert ctx.call(fwdres.by_pkgutil, "data/greeting.txt") == hello
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(fwdres.by_pkgutil, "data/absent.txt")
    assert "no data file 'data/absent.txt' in fwdres" in info.value.remote_message
    if version >= (3, 7):
        assert ctx.call(fwdres.by_path, "blob.bin") == b"blob\n"
    if version >= (3, 10):  # 3.9's importlib.resources.files() reads only real directories
        assert ctx.call(fwdres.by_files, "data", "greeting.txt") == (
            ["__init__.py", "blob.bin", "data"], True, b"hello\n", b"hello\n")


@pytest.mark.parametrize("label", ["2.7", "3.6", "3.13"])
def test_pkgutil_lists_a_forwarded_package_as_it_lists_one_on_disk(router, package_dir, label):
    # Its __path__ was empty: plugin registries found nothing, and said nothing.
    import fwdplug

    here = fwdplug.listed()
    assert here == ([("alpha", False), ("beta", True)],
                    ["fwdplug.alpha", "fwdplug.beta", "fwdplug.beta.gamma"])
    for ctx in (router.local(python=find_interpreters()[label]),
                router.local(python=find_interpreters()[label], via=router.local())):
        assert ctx.call(fwdplug.listed) == here


def test_data_files_reach_a_context_behind_an_intermediary(router, package_dir):
    import fwdres

    ctx = router.local(via=router.local())
    assert ctx.call(fwdres.by_pkgutil, "data/greeting.txt") == b"hello\n"


def test_certifi_and_requests_work_on_a_bare_target(router):
    import certifi

    from tests import remote_functions as rf

    ctx = router.local(python=find_interpreters()["3.13"])
    path = ctx.call(certifi.where)  # a temporary copy of the controller's cacert.pem there
    assert ctx.call(os.path.getsize, path) == os.path.getsize(certifi.where())
    assert ctx.call(rf.import_by_name, "requests") == "requests"


def test_data_files_are_served_from_inside_the_package_only(package_dir):
    finder = ModuleFinder()
    assert finder.resource("fwdres", "data/greeting.txt") == ("ok", b"hello\n")
    assert finder.resource("fwdres", "data") == ("ok", ["greeting.txt"])
    (package_dir / "fwdres" / ".env").write_text("SECRET=1\n")
    for name in ("../fwddep.py", "/etc/passwd", "data/../../fwddep.py", "data//greeting.txt",
                 "./blob.bin", "data/greeting.txt\0", ".env", 7):
        assert finder.resource("fwdres", name)[0] == "refused", name
    (package_dir / "fwdres" / ".env").unlink()
    # A directory without __init__.py passes for a namespace package: never served.
    (package_dir / "fwdplain").mkdir(exist_ok=True)
    (package_dir / "fwdplain" / "notes.txt").write_text("private\n")
    assert finder.resource("fwdplain", "notes.txt")[0] == "refused"
    assert finder.resource("json", "__init__.py")[0] == "refused"  # the standard library
    assert finder.resource("fwddep", "")[0] == "refused"  # a module, not a package
    assert finder.resource("../etc", "passwd")[0] == "refused"
    escape = package_dir / "fwdres" / "escape"
    escape.symlink_to("/etc")  # a directory reached through a symlink out of the package
    try:
        assert finder.resource("fwdres", "escape/passwd")[0] == "refused"
        assert finder.resource("fwdres", "escape")[0] == "refused"
    finally:
        escape.unlink()


def test_a_module_asked_for_arrives_with_its_closure_in_one_round_trip(router, helpers):
    from tests import remote_functions as rf

    ctx = router.local()
    assert ctx.call(rf.import_by_name, "fwdpkg.helpers") == "fwdpkg.helpers"
    assert router._modules.requested[ctx.context_id] == ["fwdpkg"]
    assert ctx.call(rf.import_by_name, "fwdlazy") == "fwdlazy"  # came with fwdpkg.helpers
    assert router._modules.requested[ctx.context_id] == ["fwdpkg"]


def test_c_extensions_are_refused_and_fallbacks_work(router, helpers):
    ctx = router.local()
    assert ctx.call(helpers.speedups_or_fallback) == "fallback"


@pytest.mark.parametrize("label", ["3.6", "3.13"])
def test_a_c_extension_a_target_lacks_is_named_as_one_the_controller_does_not_send(
        router, helpers, label):
    ctx = router.local(python=find_interpreters()[label])
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(importlib.import_module, "fwdpkg._speedups")
    assert info.value.remote_type in ("ModuleNotFoundError", "ImportError")
    assert info.value.hint == ("fwdpkg._speedups is a C extension on the controller, which is "
                               "never sent to targets: install fwdpkg on the target")
    assert f"(on {ctx.name})\n({info.value.hint})\n" in str(info.value)
    with pytest.raises(transport.RemoteError) as info:  # a module that is nowhere: no hint
        ctx.call(importlib.import_module, "fwdpkg._nowhere")
    assert info.value.hint == "" and "controller" not in str(info.value)


def _dist_info(name: str, version: str, requires: str, top: str) -> dict[str, str]:
    info = f"{name}-{version}.dist-info"
    return {f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 f"Requires-Python: {requires}\n\nA description: Name: x\n"),
            f"{info}/RECORD": f"{top}/__init__.py,,\n{info}/METADATA,,\n"}


def test_a_package_for_newer_pythons_is_named_with_the_version_it_requires(tmp_path):
    # A new controller sends what it has: a package that needs a newer Python fails on
    # an older target in words that name no version (here, a `|` between types).
    files = {
        "newonly/__init__.py": "from newonly import impl\n",
        "newonly/impl.py": "Alias = int | None\n\ndef ok():\n    return 1\n",
        **_dist_info("new-only", "2.0", ">=3.10, <4", "newonly"),
        "newonlyok/__init__.py": "def boom():\n    raise ValueError('its own error')\n",
        **_dist_info("newonlyok", "1.0", "!=3.0.*,>=2.7", "newonlyok"),
    }
    with importable_tree(tmp_path, files, "newonly"), transport.Router() as router:
        import newonlyok

        for label in ("3.6", "3.9"):
            ctx = router.local(python=find_interpreters()[label])
            with pytest.raises(transport.RemoteError) as info:
                ctx.call(importlib.import_module, "newonly")
            assert info.value.remote_type == "TypeError"
            version = ctx.python_version
            assert info.value.hint == (
                f"new-only 2.0 on the controller requires Python >=3.10, <4, and this target "
                f"runs {version}: install a new-only that supports Python {label} on the "
                "target (a target imports its own packages first; only what it lacks is sent)")
            with pytest.raises(transport.RemoteError) as info:  # a requirement met: none
                ctx.call(newonlyok.boom)
            assert info.value.remote_message == "its own error" and info.value.hint == ""
        from newonly import impl

        assert router.local(python=find_interpreters()["3.13"]).call(impl.ok) == 1


def test_a_forwarded_package_reading_its_own_version_fails_with_a_hint_saying_why(tmp_path):
    # The hint was that of a module whose top-level code imports what the target lacks.
    files = {
        "mdpkg/__init__.py": ("from importlib.metadata import version\n"
                              "__version__ = version('mdpkg')\n\ndef f():\n    return __version__\n"),
        **_dist_info("mdpkg", "1.0", ">=3.8", "mdpkg"),
    }
    with importable_tree(tmp_path, files, "mdpkg"), transport.Router() as router:
        import mdpkg

        assert mdpkg.f() == "1.0"
        with pytest.raises(transport.RemoteError) as info:
            router.local(python="/usr/bin/python3").call(mdpkg.f)
        assert info.value.remote_type == "importlib.metadata.PackageNotFoundError"
        assert info.value.hint.startswith("packages the target imports from the controller "
                                          "come without their distribution's metadata, which "
                                          "importlib.metadata reads (here mdpkg's)")


@pytest.mark.parametrize("version, requires, met", [
    ((3, 9, 18), ">=3.10", False), ((3, 10, 0), ">=3.10", True), ((3, 9, 0), "<=3.9", True),
    ((3, 9, 18), "<=3.9", False), ((2, 7, 18), "!=3.0.*,!=3.1.*,>=2.7", True),
    ((3, 0, 1), "!=3.0.*,>=2.7", False), ((3, 6, 15), "~=3.6", True), ((4, 0, 0), "~=3.6", False),
    ((3, 6, 15), "==3.6.*", True), ((3, 7, 1), "==3.6.*", False), ((3, 8, 0), ">3.8", False),
    ((3, 13, 0), ">=3.8, <3.13", False), ((3, 12, 1), ">=3.8, <3.13", True),
    ((3, 9, 0), ">=3.9.0rc1", True),  # a clause not understood counts as met
])
def test_requires_python_is_read_as_pep_440_compares_release_numbers(version, requires, met):
    from transport import hints

    assert hints.python_meets(".".join(map(str, version)), requires) is met


def test_a_function_the_targets_own_copy_lacks_is_explained(tmp_path, monkeypatch):
    # The target has an older copy of the module installed, which it imports rather
    # than ask for the controller's: "module 'ownedpkg' has no attribute 'added'" alone
    # reads as nonsense to a user whose ownedpkg has it.
    old = tmp_path / "installed_on_target"
    (old / "ownedpkg").mkdir(parents=True)
    (old / "ownedpkg" / "__init__.py").write_text("def kept():\n    return 'target copy'\n")
    monkeypatch.setenv("PYTHONPATH", str(old))
    files = {"ownedpkg/__init__.py": "def kept():\n    return 'controller copy'\n\n"
                                     "def added():\n    return 2\n"}
    with importable_tree(tmp_path / "controller", files, "ownedpkg"), \
            transport.Router() as router:
        import ownedpkg

        ctx = router.local(python=find_interpreters()["3.13"])
        assert ctx.call(ownedpkg.kept) == "target copy"
        with pytest.raises(transport.RemoteError) as info:
            ctx.call(ownedpkg.added)
        assert info.value.remote_message == "module 'ownedpkg' has no attribute 'added'"
        assert info.value.hint == (
            "the target imported its own ownedpkg, which has no added: a target imports the "
            "modules it has first and is sent only those it lacks, so install the "
            "controller's version of ownedpkg there (or remove its copy)")


def test_remote_traceback_shows_forwarded_source(router, helpers):
    ctx = router.local()  # the controller's Python: the module runs as byte code, its lines still show
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(helpers.fail)
    assert 'raise RuntimeError("from a forwarded module")' in info.value.remote_traceback


def _another_python() -> str:
    """A target Python whose byte-code tag is not the controller's."""
    return find_interpreters()["3.13" if sys.version_info[:2] != (3, 13) else "3.12"]


def test_forwarded_modules_run_as_byte_code_where_the_python_has_the_controllers_tag(
        router, package_dir):
    from tests import remote_functions as rf

    path = package_dir / "fwdcode.py"
    path.write_text("def answer():\n    return 42\n")
    import fwdcode

    middle = router.local()  # the controller's interpreter, so its byte-code tag
    same = router.local(via=middle)
    other = router.local(python=_another_python(), via=middle)
    assert str(path) not in middle.call(rf.compiles_while_importing, "fwdcode")
    assert middle.call(fwdcode.answer) == 42
    # Both children are answered from the intermediary's cache, which kept the byte code
    # with its tag: the child with that tag runs it, the other compiles the source.
    assert str(path) not in same.call(rf.compiles_while_importing, "fwdcode")
    assert str(path) in other.call(rf.compiles_while_importing, "fwdcode")
    assert other.call(fwdcode.answer) == 42
    assert router._modules.requested[middle.context_id].count("fwdcode") == 1
    # Sent directly to another Python: no byte code travels.
    direct = router.local(python=_another_python())
    assert str(path) in direct.call(rf.compiles_while_importing, "fwdcode")
    with transport.Router(forward_byte_code=False) as sources_only:
        assert str(path) in sources_only.local().call(rf.compiles_while_importing, "fwdcode")


@pytest.mark.parametrize("change", ["none", "mtime", "size"])
def test_byte_code_from_pycache_is_sent_only_while_it_is_current(router, package_dir, change):
    import py_compile

    from tests import remote_functions as rf

    name = f"fwdpyc_{change}"
    path = package_dir / f"{name}.py"
    # The cached file is compiled from other source than the file then holds, with the
    # same size and modification time: it passes for current (as it would for Python's own
    # import), which shows whether it was sent.
    path.write_text("def version():\n    return 'pyc'\n")
    py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    written = os.stat(path)
    path.write_text("def version():\n    return %r\n" % ("one!" if change == "size" else "one"))
    mtime = written.st_mtime + (10 if change == "mtime" else 0)
    os.utime(path, (written.st_atime, mtime))
    ctx = router.local()
    assert ctx.call(rf.call_by_name, name, "version") == {"none": "pyc", "mtime": "one",
                                                          "size": "one!"}[change]


def test_a_forwarded_module_that_does_not_compile_fails_its_import_on_the_target(
        router, package_dir):
    from tests import remote_functions as rf

    (package_dir / "fwdbroken.py").write_text("def broken(:\n    pass\n")
    with pytest.raises(transport.RemoteError) as info:
        router.local().call(rf.import_by_name, "fwdbroken")
    assert info.value.remote_type == "SyntaxError"
    assert "fwdbroken.py" in info.value.remote_traceback


@pytest.mark.parametrize("label", ["2.7", "3"])
def test_modules_installed_on_the_target_win(router, helpers, tmp_path, monkeypatch, label):
    # Python 2.7 asks sys.meta_path before its own path search: the forwarder must look
    # on disk itself there, or the controller's copy (sent ahead of the call) would win.
    from tests.support.interpreters import find_interpreters

    (tmp_path / "fwdshadow.py").write_text("WHO = 'target'\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    ctx = router.local(python=find_interpreters()["2.7"] if label == "2.7" else "/usr/bin/python3")
    assert ctx.call(helpers.shadowed_version) == "target"


def test_the_standard_library_is_never_sent():
    finder = ModuleFinder()
    assert finder.entry("json")[1] == "missing"
    assert finder.entry("email.mime.text")[1] == "missing"
    assert all(entry[0] != "json" for entry in finder.closure("transport.cli", set()))


@pytest.mark.parametrize("name", ["../../etc/passwd", "os.path/../x", "", "a..b", "1abc"])
def test_names_that_are_not_modules_get_a_negative_answer(name):
    assert ModuleFinder().entry(name)[1] == "missing"


def test_an_unknown_module_is_an_import_error_on_the_target(router):
    ctx = router.local()
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(importlib.import_module, "no_such_module_anywhere")
    assert info.value.remote_type in ("ModuleNotFoundError", "ImportError")
    with pytest.raises(transport.RemoteError):
        ctx.call(importlib.import_module, "etc/passwd")


def test_a_repeated_call_sends_no_module_data_and_few_bytes(router, helpers):
    ctx = router.local()
    assert ctx.call(helpers.use_dep, 1) == 2
    stream = router._core.route_for(ctx.context_id)
    before_out, before_in = stream.bytes_sent, stream.bytes_received
    requested = list(router._modules.requested.get(ctx.context_id, []))
    assert ctx.call(helpers.use_dep, 2) == 4
    assert router._modules.requested.get(ctx.context_id, []) == requested
    assert stream.bytes_sent - before_out <= 200
    assert stream.bytes_received - before_in <= 200


def test_an_intermediary_answers_from_its_cache(router, helpers):
    from tests import remote_functions as rf

    middle = router.local()
    first = router.local(via=middle)
    second = router.local(via=middle)
    assert first.call(rf.import_by_name, "fwdpkg.helpers") == "fwdpkg.helpers"
    asked = {k: list(v) for k, v in router._modules.requested.items()}
    assert asked[middle.context_id] == ["fwdpkg"]
    assert second.call(rf.import_by_name, "fwdpkg.helpers") == "fwdpkg.helpers"
    assert router._modules.requested == asked  # the intermediary had it all


def test_a_hint_that_fails_leaves_the_error_as_it_was(ctx, monkeypatch, caplog):
    # Hints are made on the router's thread as it completes a failed call: one that
    # raised there would leave its caller waiting for ever.
    from transport import hints

    def broken(traceback_text):
        raise RuntimeError("the hint's own bug")

    monkeypatch.setattr(hints, "_frames", broken)
    with caplog.at_level(logging.ERROR, logger="transport"):
        with pytest.raises(transport.RemoteError) as info:
            ctx.call_async(int, "not a number").result(timeout=60)
    assert info.value.remote_type == "ValueError" and info.value.hint == ""
    assert "cannot explain a failed call (a bug: please report it)" in caplog.text
    assert "the hint's own bug" in caplog.text
    assert ctx.call(int, "7") == 7


def test_functions_from_the_callers_main_script(tmp_path):
    script = tmp_path / "deploy_script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        import transport

        def hello(name):
            return "hello " + name + " from " + __name__

        if __name__ == "__main__":
            with transport.Router() as router:
                print(router.local().call(hello, "target"))
    """))
    out = subprocess.run([sys.executable, str(script)], cwd="/", capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello target from __transport_main__"


def test_a_script_without_a_main_guard_is_told_why_the_target_ran_it(tmp_path):
    # The target imports the script to find hello(); without the guard it runs the
    # script's own work there, where `transport` is the core: the error says why.
    # A function that raises of its own in a guarded script gets no such hint.
    body = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        import transport

        def hello():
            raise ValueError("hello failed")

        {{guard}}with transport.Router() as router:
            {{guard_indent}}router.local().call(hello)
    """)
    guarded = body.format(guard='if __name__ == "__main__":\n    ', guard_indent="    ")
    for name, text, expected in (("unguarded.py", body.format(guard="", guard_indent=""),
                                  "AttributeError: module 'transport' has no attribute 'Router'"),
                                 ("guarded.py", guarded, "ValueError: hello failed")):
        script = tmp_path / name
        script.write_text(text)
        out = subprocess.run([sys.executable, str(script)], cwd="/", capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 1
        assert f"RemoteError: {expected} (on local:{sys.executable})\n" in out.stderr
        hint = (f"(the target ran the module-level code of this script, {script}, as it "
                f"imported it to find a function of it: keep the script's own work under "
                f"`if __name__ == \"__main__\":`)")
        assert (hint in out.stderr) == (name == "unguarded.py"), out.stderr


def test_functions_from_a_main_run_with_dash_m_or_without_dot_py(tmp_path):
    # python -m app.deploy: the target imports app.deploy itself, so its relative
    # imports work; a script named without .py (/usr/local/bin/deploy) is sent as one.
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "helpers.py").write_text("GREETING = 'hello'\n")
    body = textwrap.dedent(f"""
        import sys
        sys.path.insert(1, {os.getcwd()!r})
        import transport

        def hello(name):
            from {{helpers}} import GREETING
            return GREETING + " " + name + " from " + __name__

        if __name__ == "__main__":
            with transport.Router() as router:
                print(router.local().call(hello, "target"))
    """)
    (tmp_path / "app" / "deploy.py").write_text(body.format(helpers=".helpers"))
    (tmp_path / "deploy").write_text(body.format(helpers="app.helpers"))
    for argv, expected in ((["-m", "app.deploy"], "app.deploy"),
                           ([str(tmp_path / "deploy")], "__transport_main__")):
        out = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"hello target from {expected}"


def test_modules_from_a_zip_archive_and_a_zipapps_main_travel(tmp_path):
    # A controller run from a zipapp (python app.pyz, as shiv and PEX build them) or with
    # an archive on sys.path imports through zipimport: the archive's sources are sent.
    import zipapp

    app = tmp_path / "app"
    (app / "zipped_tasks").mkdir(parents=True)
    (app / "zipped_tasks" / "__init__.py").write_text(
        "import pkgutil\n\n"
        "def where():\n    return __name__ + ' from ' + __file__.rpartition('.pyz')[2]\n\n"
        "def motd():\n    return pkgutil.get_data(__name__, 'templates/motd.txt').decode()\n")
    (app / "zipped_tasks" / "templates").mkdir()
    (app / "zipped_tasks" / "templates" / "motd.txt").write_text("welcome\n")
    (app / "__main__.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(1, {os.getcwd()!r})
        import transport, zipped_tasks

        def main_function():
            return "main of the zipapp on " + sys.version.split()[0]

        if __name__ == "__main__":
            with transport.Router() as router:
                ctx = router.local(python={find_interpreters()["3.9"]!r})
                print(ctx.call(zipped_tasks.where))
                print(ctx.call(main_function))
                print(ctx.call(zipped_tasks.motd), end="")  # its data files travel too
    """))
    zipapp.create_archive(app, tmp_path / "app.pyz")
    out = subprocess.run([sys.executable, str(tmp_path / "app.pyz")], cwd="/", capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout == ("zipped_tasks from /zipped_tasks/__init__.py\n"
                          f"main of the zipapp on {find_interpreters()['3.9'].split('/')[-3]}\n"
                          "welcome\n")


def test_a_function_from_python_dash_c_is_refused_here():
    code = ("import transport, os\n"
            "def f():\n    return 1\n"
            "with transport.Router() as router:\n"
            "    try:\n        router.local().call(f)\n"
            "    except TypeError as e:\n        print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == (
        "__main__.f comes from a program with no source file (python -c, standard input, a "
        "REPL or a notebook), which a target cannot import; define it in a module"), out.stderr


def test_what_is_larger_than_a_message_may_be_is_refused_or_split(tmp_path):
    # With a 1 MiB limit: a 3 MB data file is refused (the target would drop its
    # connection at a larger message), 1.6 MB of modules preloaded go in pieces, a
    # module larger than a message is not sent, and one asked for whose closure is
    # larger than a message is sent alone.
    files = {"bigpkg/__init__.py": "import importlib\nimport pkgutil\n\n"
                                   "def seven_from(name):\n"
                                   "    return importlib.import_module(name).seven()\n\n"
                                   "def read(name):\n"
                                   "    return len(pkgutil.get_data(__name__, name))\n\n"
                                   "def total():\n"
                                   "    from bigpkg import " + ", ".join(f"m{i}" for i in range(8))
                                   + "\n    return sum(len(m.DATA) for m in (" +
                                   ", ".join(f"m{i}" for i in range(8)) + "))\n"}
    for i in range(8):
        files[f"bigpkg/m{i}.py"] = f"DATA = {os.urandom(200_000).hex()!r}\n"
    files["bigpkg/huge.py"] = f"DATA = {os.urandom(1_300_000).hex()!r}\n"  # > 1 MiB compressed
    files["bigpkg/lazy.py"] = ("def seven():\n    return 7\n\n"
                               "def huge():\n    from bigpkg import huge\n    return len(huge.DATA)\n")
    (tmp_path / "bigpkg").mkdir()
    (tmp_path / "bigpkg" / "blob.bin").write_bytes(os.urandom(3_000_000))
    (tmp_path / "bigpkg" / "small.bin").write_bytes(b"x" * 1000)
    with importable_tree(tmp_path, files, "bigpkg"), \
            transport.Router(max_message_size=1 << 20) as router:
        bigpkg = importlib.import_module("bigpkg")
        lazy = importlib.import_module("bigpkg.lazy")
        ctx = router.local(python="/usr/bin/python3")
        # Asked for by the target, bigpkg.lazy is sent without its closure, too large.
        assert ctx.call(bigpkg.seven_from, "bigpkg.lazy") == 7
        with pytest.raises(transport.RemoteError, match="cannot import name 'huge'"):
            ctx.call(lazy.huge)
        with pytest.raises(transport.RemoteError) as info:
            ctx.call(bigpkg.read, "blob.bin")
        assert "more than a message may carry (max_message_size, 1048576)" in str(info.value)
        assert ctx.call(bigpkg.read, "small.bin") == 1000  # the context went on
        with pytest.raises(ImportError, match="cannot preload bigpkg.huge"):
            ctx.preload(["bigpkg"], whole_packages=True)  # that one alone cannot go
        assert ctx.call(bigpkg.total) == 8 * 400_000
        asked = router._modules.requested.get(ctx.context_id, [])
        assert not [name for name in asked if name.startswith("bigpkg.m")]  # all preloaded


def test_forwarding_to_python_2(router, helpers):
    ctx = router.local(python=find_interpreters()["2.7"])
    assert ctx.call(helpers.use_dep, 4) == 8
    assert json.loads(json.dumps(ctx.call(helpers.lazy))) == "lazy"
    assert router._modules.requested.get(ctx.context_id, []) == []


def test_python_2_modules_keep_their_implicit_relative_imports(router, package_dir):
    from tests import remote_functions as rf

    ctx = router.local(python=find_interpreters()["2.7"])
    assert ctx.call(rf.import_by_name, "fwdpy2") == "fwdpy2"
    assert ctx.call(eval, "__import__('fwdpy2').value()") == 101
    # fwdpy2 tries fwdpy2.os before os, and finds fwdpy2.sibling: the answers came with
    # fwdpy2, so it was the only name asked for.
    assert router._modules.requested.get(ctx.context_id, []) == ["fwdpy2"]


def test_a_python_2_error_with_utf8_text_from_a_forwarded_module_is_reported(router,
                                                                             package_dir):
    # Its traceback mixes the forwarded source's lines (text) with the error's bytes.
    ctx = router.local(python=find_interpreters()["2.7"])
    with pytest.raises(transport.RemoteError) as info:
        ctx.call(eval, "__import__('fwdpy2text').fail()")
    assert info.value.remote_message == "\u00e9chec: d\u00e9p\u00f4t"
    assert "raise ValueError('\u00e9chec" in info.value.remote_traceback
    assert info.value.remote_traceback.endswith("ValueError: \u00e9chec: d\u00e9p\u00f4t\n")
    assert ctx.call(eval, "1 + 1") == 2  # and the target goes on
    with pytest.raises(transport.RemoteError) as info:  # str() of it would fail on 2.7
        ctx.call(eval, "__import__('fwdpy2text').fail_with_text()")
    assert info.value.remote_message == "\u00e9t\u00e9"
    # The same error in a callback of the target's broker thread is reported, and the
    # loop goes on.
    ctx.call(eval, "__import__('fwdpy2text').fail_on_the_broker()")
    assert ctx.call(eval, "2 + 2") == 4


def test_a_third_party_package_over_ssh_arrives_with_the_module_that_uses_it(router, sshd):
    from tests import remote_functions as rf

    ctx = router.ssh("127.0.0.1", port=sshd.port, user="tp-plain", python="/usr/bin/python3",
                     ssh_options=sshd.ssh_options())
    # /usr/bin/python3 here has no jinja2: it arrives with the module that imports it.
    assert ctx.call(rf.render, "{{ greeting }}, {{ name|upper }}!", greeting="Hello",
                    name="ops") == "Hello, OPS!"
    # tests.remote_functions, jinja2 and markupsafe went ahead of the call.
    assert router._modules.requested.get(ctx.context_id, []) == []


def test_an_intermediary_asks_once_however_many_children_wait(router, package_dir):
    # A fresh module name, so no cache anywhere has it yet.
    (package_dir / "fwdonce.py").write_text("import time\ntime.sleep(0.3)\n\ndef value():\n    return 7\n")
    import fwdonce

    from tests import remote_functions as rf

    assert fwdonce.value() == 7
    middle = router.local()
    children = [router.local(via=middle) for _ in range(3)]
    for child in children:
        child.call(pow, 1, 1)
    futures = [child.call_async(rf.import_by_name, "fwdonce") for child in children]
    assert [f.result(timeout=30) for f in futures] == ["fwdonce"] * 3
    assert router._modules.requested[middle.context_id].count("fwdonce") == 1


def test_forwarding_can_be_paused_for_code_that_must_see_the_host_as_it_is(router, helpers):
    ctx = router.local(python="/usr/bin/python3")
    assert ctx.call(helpers.import_by_name_locally_only, "fwdextra") == "not on this host"
    assert ctx.call(helpers.import_by_name_locally_only, "json") == "imported"
    assert ctx.call(helpers.lazy) == "lazy"  # forwarding is back after the block


def test_namespace_packages_nested_in_namespace_packages(router, tmp_path):
    # nsouter and nsouter.inner have no __init__.py; the controller has not imported them.
    files = {"nsouter/inner/leaf.py": "VALUE = 'leaf'\n",
             "nsuser.py": "def value():\n    from nsouter.inner import leaf\n    return leaf.VALUE\n"}
    with importable_tree(tmp_path, files, "ns"):
        user = importlib.import_module("nsuser")
        assert "nsouter" not in sys.modules
        assert router.local(python="/usr/bin/python3").call(user.value) == "leaf"


def test_a_namespace_package_imported_by_name_or_preloaded(router, tmp_path):
    # importlib.import_module("nsbyname") asks for the namespace package itself first
    # (a static import asks for its module): it was a 60 s wait, then ModuleNotFoundError.
    files = {"nsbyname/leaf.py": "VALUE = 'leaf'\n",
             "nsimporter.py": "import importlib\n\n"
                              "def imported(name):\n"
                              "    return importlib.import_module(name).__name__\n"}
    with importable_tree(tmp_path, files, "nsname"):
        importer = importlib.import_module("nsimporter")
        ctx = router.local(python="/usr/bin/python3")
        assert ctx.call(importer.imported, "nsbyname") == "nsbyname"
        assert ctx.call(importer.imported, "nsbyname.leaf") == "nsbyname.leaf"
        router.local(python="/usr/bin/python3").preload(["nsbyname"])


def test_an_import_whose_request_went_unanswered_asks_again(router):
    from tests import remote_functions as rf

    ctx = router.local(python="/usr/bin/python3")  # which has no invoke of its own
    assert ctx.call(rf.import_after_a_lost_request, "invoke") == ["ImportError", "imported"]


def test_an_intermediary_asks_again_for_a_child_once_its_request_went_unanswered(router):
    # Its children's requests joined the lost one for ever: the child's every later
    # import of the name waited its whole timeout and failed.
    from tests import remote_functions as rf

    middle = router.local(python="/usr/bin/python3")  # neither has invoke of its own
    child = router.local(python="/usr/bin/python3", via=middle)
    assert middle.call(rf.lose_the_next_module_request, 0.5)
    assert child.call(rf.import_with_patience, "invoke", 1.0) == "ImportError"
    assert child.call(rf.import_with_patience, "invoke", 60) == "imported"


ACCENTED = {
    "accmod/__init__.py": textwrap.dedent("""
        # -*- coding: utf-8 -*-
        import pkgutil
        import traceback


        def handled():
            try:
                raise ValueError('\u00e9chec')
            except ValueError:
                return traceback.format_exc()


        def data():
            return pkgutil.get_data(__name__, 'note.txt').decode('ascii')
    """),
    "accmod/note.txt": "hello data\n",
}


@pytest.mark.parametrize("label", ["2.7", "3.6", "3.13"])
def test_modules_forwarded_from_a_directory_with_a_non_ascii_name(router, tmp_path, label):
    # The controller's path (its __file__ there) is not ASCII; the traceback a module
    # formats itself shows its source line; its data files are read as pkgutil reads them.
    from tests.support.packages import importable_tree

    with importable_tree(tmp_path / "d\u00e9p\u00f4t", ACCENTED, "accmod"):
        accmod = importlib.import_module("accmod")
        ctx = router.local(python=find_interpreters()[label])
        text = ctx.call(accmod.handled)
        assert "raise ValueError('\u00e9chec')" in text and "d\u00e9p\u00f4t" in text
        assert ctx.call(accmod.data) == "hello data\n"
