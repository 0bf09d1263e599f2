"""Package discovery for ruledesk's three top-level folders, installed as ruledesk.engine, ruledesk.grammar and
ruledesk.actions (everything else is in pyproject.toml): setuptools cannot prefix discovered package names itself."""

from setuptools import find_packages, setup

ROOTS = {"engine": "ruledesk.engine", "grammar": "ruledesk.grammar", "actions": "ruledesk.actions"}

packages, package_dir = [], {}
for folder, name in ROOTS.items():
    for found in [""] + find_packages(folder):
        package = f"{name}.{found}" if found else name
        packages.append(package)
        package_dir[package] = f"{folder}/{found.replace('.', '/')}" if found else folder

setup(packages=packages, package_dir=package_dir)
