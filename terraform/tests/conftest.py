"""Shared loading of the Terraform (python-hcl2), the routing and topic tables, cloudbuild.yaml.

The tests read the configuration as written: terraform cannot download providers here, so
nothing is planned. What a static reading cannot settle (the URL map's computed rules) is
evaluated with `terraform console` on the provider-free frontdoor-routes module when a
terraform binary is installed (test_edge.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

TERRAFORM = Path(__file__).resolve().parents[1]
ROOT = TERRAFORM.parent
MODULES = TERRAFORM / "modules"
ENVS = TERRAFORM / "envs"
REGION = "southamerica-west1"


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and labels; drop them, recursively.
    Expressions stay as python-hcl2 writes them: "${...}"."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


@dataclass
class Block:
    kind: str  # resource, data, module, variable, output, locals
    labels: tuple[str, ...]
    body: dict
    file: Path
    comments: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return ".".join(self.labels)


@dataclass
class Module:
    path: Path
    blocks: list[Block]
    text: str  # every .tf file of the module, concatenated

    def of(self, kind: str) -> list[Block]:
        return [b for b in self.blocks if b.kind == kind]

    def resources(self, rtype: str | None = None) -> list[Block]:
        return [b for b in self.of("resource") if rtype is None or b.labels[0] == rtype]

    def resource(self, rtype: str, name: str) -> Block:
        for b in self.resources(rtype):
            if b.labels[1] == name:
                return b
        raise KeyError(f"{self.path.name}: no {rtype}.{name}")

    def variables(self) -> dict[str, dict]:
        return {b.labels[0]: b.body for b in self.of("variable")}

    def outputs(self) -> dict[str, dict]:
        return {b.labels[0]: b.body for b in self.of("output")}

    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for b in self.of("locals"):
            merged.update(b.body)
        return merged

    def calls(self) -> dict[str, Block]:
        return {b.labels[0]: b for b in self.of("module")}


def _comments(body: dict) -> list[str]:
    found = []
    for c in body.get("__comments__", []):
        found.append(c.get("value", "") if isinstance(c, dict) else str(c))
    return found


def _strip_comments(value: Any) -> Any:
    if isinstance(value, list):
        return [_strip_comments(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip_comments(v) for k, v in value.items() if k not in ("__comments__", "__inline_comments__")}
    return value


def parse_file(path: Path) -> list[Block]:
    with path.open() as f:
        raw = hcl2.load(f)
    blocks: list[Block] = []
    for kind in ("resource", "data"):
        for entry in raw.get(kind, []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    blocks.append(Block(kind, (unquote(rtype), unquote(name)), unquote(_strip_comments(body)), path, _comments(body)))
    for kind in ("module", "variable", "output"):
        for entry in raw.get(kind, []):
            for name, body in entry.items():
                blocks.append(Block(kind, (unquote(name),), unquote(_strip_comments(body)), path, _comments(body)))
    for entry in raw.get("locals", []):
        blocks.append(Block("locals", (), unquote(_strip_comments(entry)), path, _comments(entry)))
    for entry in raw.get("terraform", []):
        blocks.append(Block("terraform", (), unquote(_strip_comments(entry)), path))
    for entry in raw.get("provider", []):
        for name, body in entry.items():
            blocks.append(Block("provider", (unquote(name),), unquote(_strip_comments(body)), path))
    return blocks


@lru_cache(maxsize=None)
def load_module(path: Path) -> Module:
    files = sorted(path.glob("*.tf"))
    assert files, f"{path} has no .tf files"
    blocks: list[Block] = []
    for f in files:
        blocks.extend(parse_file(f))
    return Module(path, blocks, "\n".join(f.read_text() for f in files))


def module_dirs() -> list[Path]:
    return sorted(p for p in MODULES.iterdir() if p.is_dir())


def env_dirs() -> list[Path]:
    return sorted(p for p in ENVS.iterdir() if p.is_dir())


def all_module_paths() -> list[Path]:
    return module_dirs() + env_dirs()


def first(block_list: Any) -> dict:
    """A nested block as python-hcl2 gives it (a list of one dict) -> the dict."""
    if isinstance(block_list, list):
        assert len(block_list) >= 1, "empty block list"
        return block_list[0]
    assert isinstance(block_list, dict), f"not a block: {block_list!r}"
    return block_list


def dynamics(body: dict, name: str) -> list[dict]:
    """Every `dynamic "name"` block of a body."""
    return [d[name] for d in body.get("dynamic", []) if name in d]


def dynamic(body: dict, name: str) -> dict | None:
    """The one `dynamic "name"` block of a body, if any."""
    found = dynamics(body, name)
    assert len(found) <= 1, f"several dynamic {name} blocks"
    return found[0] if found else None


def expr(value: Any) -> str:
    """An expression without python-hcl2's ${ } wrapper."""
    assert isinstance(value, str), f"not an expression: {value!r}"
    m = re.fullmatch(r"\$\{(.*)\}", value, re.S)
    return m.group(1).strip() if m else value


@lru_cache(maxsize=None)
def routes() -> dict:
    return json.loads((ROOT / "shared/frontdoor/routes.json").read_text())


@lru_cache(maxsize=None)
def topics() -> dict:
    return json.loads((ROOT / "shared/events/topics.json").read_text())


def functions() -> list[str]:
    return sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "Cargo.toml").exists())


@lru_cache(maxsize=None)
def migration_roles() -> list[str]:
    sql = (ROOT / "shared/store/migrations/20261125000001_roles.sql").read_text()
    m = re.search(r"ARRAY\[([^\]]+)\]", sql)
    assert m, "the roles migration no longer lists its roles in one ARRAY[...]"
    return re.findall(r"'([a-z_]+)'", m.group(1))


@pytest.fixture(scope="session")
def platform() -> Module:
    return load_module(MODULES / "platform")


@pytest.fixture(scope="session")
def prod() -> Module:
    return load_module(ENVS / "prod")


@pytest.fixture(scope="session")
def staging() -> Module:
    return load_module(ENVS / "staging")
