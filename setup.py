"""Only what pyproject.toml cannot say: profiles/ sits at the top of the repo (data a team edits) and ships
inside the wheel as the package `edgekd.profiles`."""

from setuptools import find_namespace_packages, setup

setup(
    # namespace discovery: the data folders (recipes/, schemas/) are shipped as packages too
    packages=[*find_namespace_packages(include=["edgekd", "edgekd.*"], exclude=["*.__pycache__"]), "edgekd.profiles"],
    package_dir={"edgekd.profiles": "profiles"},
)
