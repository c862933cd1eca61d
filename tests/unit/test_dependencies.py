"""Reproducible installs: constraints.txt pins every package pyproject.toml asks for, make
install and the Dockerfile use it, and the Elasticsearch client matches the server compose runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            found[canonicalize_name(name)] = version
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        listed.extend(extra)
    return [Requirement(r) for r in listed if not r.startswith("pedidos")]


def test_every_dependency_is_pinned_within_what_pyproject_allows() -> None:
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is missing from constraints.txt: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, pyproject asks {requirement}"
        )


def test_the_install_paths_use_the_constraints() -> None:
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "constraints.txt" in dockerfile.split("pip install")[0]  # copied before the install
    assert "pip install -c constraints.txt ." in dockerfile


def test_the_elasticsearch_client_matches_the_server_in_compose() -> None:
    compose = (ROOT / "docker-compose.Elasticsearch.yml").read_text()
    server = re.search(r"elasticsearch/elasticsearch:(\d+)\.(\d+)\.\d+", compose)
    assert server is not None
    client = pins()["elasticsearch"].split(".")
    assert client[:2] == [server[1], server[2]], (
        f"client {pins()['elasticsearch']} against server {server[1]}.{server[2]}"
    )
