"""Packaging for transport. The core (transport/core) needs nothing beyond the standard library."""

from setuptools import find_packages, setup

setup(
    name="transport",
    version="0.1.0",
    description="A fast remote-execution transport for Python orchestration tools",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["transport", "transport.*", "adapters", "adapters.*"]),
    extras_require={
        "dev": ["pytest>=7", "pytest-timeout>=2.1", "invoke>=2.0", "ruff>=0.4", "jinja2>=3",
                "paramiko>=3", "fabric>=3.0,<4"],
        "fabric": ["fabric>=3.0,<4", "invoke>=2.0", "paramiko>=3.0"],
        "salt": ["salt==3008.*"],
    },
    entry_points={
        "console_scripts": ["transport=transport.cli:main"],
        # Importing the extension installs the salt-ssh hooks (see adapters/salt).
        "salt.loader": ["transport = adapters.salt.extension:loader_dirs"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: System :: Systems Administration",
    ],
)
