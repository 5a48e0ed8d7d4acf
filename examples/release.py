"""Packing the example app as a release tarball (used by the fabfile and by `inv demo`)."""

import os
import tarfile
import tempfile

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app")


def build_release(release):
    """A tarball of app/ plus a VERSION file naming the release; returns its path."""
    directory = tempfile.mkdtemp(prefix="release-")
    version = os.path.join(directory, "VERSION")
    with open(version, "w") as f:
        f.write(release + "\n")
    path = os.path.join(directory, f"{release}.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(APP, arcname=".")
        tar.add(version, arcname="VERSION")
    return path
