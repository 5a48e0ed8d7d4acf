"""The controller's on-disk caches: right answers across processes, and bounded in size."""

from __future__ import annotations

import os
import time

from adapters.salt.file_set import DigestCache
from transport import disk_cache
from transport.modules import ScanCache


def _entries(directory):
    """The cache files in directory (not the mark of its last look-over)."""
    return [p for p in directory.iterdir() if p.name != disk_cache.PRUNED_MARK]


def test_import_scans_are_found_by_a_later_process_one_file_each(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = ScanCache()
    first.put("pkg.a|module|/src/pkg/a.py|10|0000abcd", [("os", True), ("pkg.b", False)])
    first.put("pkg.b|module|/src/pkg/b.py|20|0000beef", [])
    first.flush()
    assert len(_entries(tmp_path / "transport" / "import-scans")) == 2
    later = ScanCache()
    assert later.get("pkg.a|module|/src/pkg/a.py|10|0000abcd") == [("os", True), ("pkg.b", False)]
    assert later.get("pkg.b|module|/src/pkg/b.py|20|0000beef") == []
    assert later.get("pkg.a|module|/src/pkg/a.py|11|0000abcd") is None  # the file changed


def test_a_damaged_scan_file_is_scanned_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = ScanCache()
    cache.put("m|module|/m.py|1|00000001", [("json", True)])
    cache.flush()
    (scan_file,) = _entries(tmp_path / "transport" / "import-scans")
    scan_file.write_text("{not json")
    assert ScanCache().get("m|module|/m.py|1|00000001") is None


def test_salt_digests_are_kept_per_installation_and_only_for_listed_files(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    install = tmp_path / "site-packages"
    install.mkdir()
    (install / "a.py").write_text("a = 1\n")
    (install / "b.py").write_text("b = 2\n")
    tops = [str(install)]
    digests = DigestCache(tops)
    first = {name: digests.describe(str(install / name))[0] for name in ("a.py", "b.py")}
    digests.save()
    # The next run lists only a.py (b.py was removed): its entry goes from the file.
    (install / "b.py").unlink()
    digests = DigestCache(tops)
    assert digests.describe(str(install / "a.py"))[0] == first["a.py"]
    digests.save()
    assert set(DigestCache(tops).known) == {str(install / "a.py")}
    # Another installation has a file of its own.
    assert DigestCache([str(tmp_path / "other")]).path != digests.path
    # An edited file is hashed anew.
    (install / "a.py").write_text("a = 10\n")
    assert DigestCache(tops).describe(str(install / "a.py"))[0] != first["a.py"]


def test_files_unused_for_a_month_go_when_a_new_one_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    scans = tmp_path / "transport" / "import-scans"
    cache = ScanCache()
    cache.put("old|module|/old.py|1|00000001", [])
    cache.put("used|module|/used.py|1|00000002", [("os", True)])
    cache.flush()
    long_ago = time.time() - (disk_cache.UNUSED_DAYS + 5) * disk_cache.DAY
    for entry in scans.iterdir():
        os.utime(entry, (long_ago, long_ago))
    (scans / disk_cache.PRUNED_MARK).unlink()
    assert ScanCache().get("used|module|/used.py|1|00000002") == [("os", True)]  # used: kept
    leftover = scans / "x.1234.tmp"  # a writer that died
    leftover.write_text("")
    os.utime(leftover, (long_ago, long_ago))

    cache.put("new|module|/new.py|1|00000003", [])
    cache.flush()
    later = ScanCache()
    assert later.get("old|module|/old.py|1|00000001") is None
    assert later.get("used|module|/used.py|1|00000002") == [("os", True)]
    assert later.get("new|module|/new.py|1|00000003") == []
    assert not leftover.exists()
    assert len(_entries(scans)) == 2

    # Looked over at most once a day: a file gone stale since then stays until the next time.
    stale = scans / "stale"
    stale.write_text("")
    os.utime(stale, (long_ago, long_ago))
    cache.put("newer|module|/newer.py|1|00000004", [])
    cache.flush()
    assert stale.exists()
    disk_cache.prune(str(scans), now=time.time() + 2 * disk_cache.DAY)
    assert not stale.exists()
    assert ScanCache().get("newer|module|/newer.py|1|00000004") == []
