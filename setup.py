"""Only what pyproject.toml cannot say: profiles/ sits at the top of the repo (data a team edits) and ships
inside the wheel as the package `edgekd.profiles`."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["edgekd", "edgekd.*"]), "edgekd.profiles"],
    package_dir={"edgekd.profiles": "profiles"},
)
