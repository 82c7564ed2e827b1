"""Builds kb with its knowledge: content/, runbooks/ and static/ (top-level folders of the repository)
are copied into the package as kb/shipped/ so that a wheel or a non-editable install carries them.

Everything else about the package is declared in pyproject.toml.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("content", "runbooks", "static")


class build_py_with_knowledge(build_py):
    """build_py, plus the shipped folders; an editable install reads them from the checkout instead."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED:
            self.copy_tree(name, os.path.join(self.build_lib, "kb", "shipped", name))


setup(cmdclass={"build_py": build_py_with_knowledge})
