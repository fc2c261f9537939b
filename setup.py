"""Package discovery: every package under convt_audio/ and cli/ found by setuptools, plus the
built-in configs, which live at the top level (configs/) and ship as convt_audio.configs."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["convt_audio", "convt_audio.*", "cli", "cli.*"]), "convt_audio.configs"])
