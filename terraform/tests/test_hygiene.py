"""What `terraform validate` would catch, checked without providers (none can be downloaded
here): every reference resolves, every module call matches its module's variables, no
hyphenated attribute access (HCL reads `a.b-c` as a subtraction), every variable and output
documented, every module in fabric shape, every checkov skip with a written reason inside the
resource it skips; and the provider pinned."""

import re
from pathlib import Path

import pytest

from conftest import ENVS, MODULES, TERRAFORM, all_module_paths, load_module, module_dirs

META_ARGS = {"source", "depends_on", "count", "for_each", "providers", "version"}


def expressions(value):
    """Every string holding an expression or template, anywhere in a parsed body."""
    if isinstance(value, str):
        if "${" in value:
            yield value
    elif isinstance(value, list):
        for v in value:
            yield from expressions(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from expressions(v)


def interpolations(text: str):
    """The insides of ${ ... } spans (balanced braces), string literals blanked out."""
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            return
        depth, j = 0, start + 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        inner = text[start + 2:j]
        yield re.sub(r'"(?:[^"\\]|\\.)*"', '""', inner)
        i = j + 1


def module_exprs(mod):
    for b in mod.blocks:
        for e in expressions(b.body):
            for inner in interpolations(e):
                yield b, inner


@pytest.mark.parametrize("path", all_module_paths(), ids=lambda p: p.name)
def test_references_resolve(path):
    mod = load_module(path)
    variables = set(mod.variables())
    locals_ = set(mod.locals())
    resources = {b.address for b in mod.resources()}
    data = {b.address for b in mod.of("data")}
    calls = mod.calls()
    problems = []
    for block, e in module_exprs(mod):
        where = f"{block.kind} {block.address or ''}"
        for name in re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", e):
            if name not in variables:
                problems.append(f"{where}: var.{name} undeclared")
        for name in re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_]*)", e):
            if name not in locals_:
                problems.append(f"{where}: local.{name} undeclared")
        # module.NAME.OUTPUT, or module.NAME[KEY].OUTPUT for a call with for_each
        for name in re.findall(r"\bmodule\.([A-Za-z_][A-Za-z0-9_]*)", e):
            if name not in calls:
                problems.append(f"{where}: module.{name} undeclared")
        for name, out in re.findall(r"\bmodule\.([A-Za-z_][A-Za-z0-9_]*)(?:\[[^\]]*\])?\.([A-Za-z_][A-Za-z0-9_]*)", e):
            if name not in calls:
                continue
            callee = load_module((path / calls[name].body["source"]).resolve())
            if out not in callee.outputs():
                problems.append(f"{where}: module.{name}.{out} is not an output of {callee.path.name}")
        for rtype, name in re.findall(r"(?<![\w.])(google_[a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_]*)", e):
            if f"{rtype}.{name}" not in resources:
                problems.append(f"{where}: {rtype}.{name} undeclared")
        for rtype, name in re.findall(r"\bdata\.([a-z0-9_]+)\.([A-Za-z_][A-Za-z0-9_]*)", e):
            if f"{rtype}.{name}" not in data:
                problems.append(f"{where}: data.{rtype}.{name} undeclared")
        if re.search(r"[A-Za-z0-9_\]]\.[A-Za-z_][A-Za-z0-9_]*-[A-Za-z]", e):
            problems.append(f"{where}: hyphenated attribute access (a subtraction in HCL): {e.strip()[:120]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", all_module_paths(), ids=lambda p: p.name)
def test_module_calls_match_their_modules(path):
    for name, call in load_module(path).calls().items():
        callee = load_module((path / call.body["source"]).resolve())
        declared = callee.variables()
        passed = set(call.body) - META_ARGS
        unknown = passed - set(declared)
        assert not unknown, f"{path.name}: module {name} passes undeclared {sorted(unknown)}"
        missing = {v for v, body in declared.items() if "default" not in body} - passed
        assert not missing, f"{path.name}: module {name} misses required {sorted(missing)}"


@pytest.mark.parametrize("path", module_dirs(), ids=lambda p: p.name)
def test_modules_have_fabric_shape_and_documentation(path):
    for f in ("versions.tf", "variables.tf", "outputs.tf", "main.tf"):
        assert (path / f).exists(), f"{path.name} lacks {f}"
    mod = load_module(path)
    for name, body in mod.variables().items():
        assert body.get("description"), f"{path.name}: variable {name} undocumented"
        assert "type" in body, f"{path.name}: variable {name} untyped"
    for name, body in mod.outputs().items():
        assert body.get("description"), f"{path.name}: output {name} undocumented"


@pytest.mark.parametrize("path", all_module_paths(), ids=lambda p: p.name)
def test_google_provider_is_pinned(path):
    text = (path / "versions.tf").read_text()
    if path.name == "frontdoor-routes":
        assert "required_providers" not in text
        return
    m = re.search(r'source\s*=\s*"hashicorp/google"\s*\n\s*(?:#.*\n\s*)*version\s*=\s*"([^"]+)"', text)
    assert m, f"{path.name}: google provider not pinned"
    assert re.fullmatch(r"(~> 7\.\d+|>= 7\.\d+\.\d+, < 8\.0\.0)", m.group(1)), m.group(1)


def test_checkov_skips_carry_a_reason_inside_the_resource():
    skips = []
    for f in sorted(TERRAFORM.rglob("*.tf")):
        for line in f.read_text().splitlines():
            if "checkov:skip" in line:
                m = re.fullmatch(r"\s*#checkov:skip=(CKV2?_GCP_\d+):(.{40,})", line)
                assert m, f"{f}: skip without a written reason: {line.strip()}"
                skips.append((f, m.group(1)))
    for f, check in skips:
        mod = load_module(f.parent)
        inside = [b for b in mod.resources() if any(check in c for c in b.comments)]
        assert inside, f"{f}: the skip of {check} is not inside a resource block"


def test_terraform_fmt():
    import os
    import shutil
    import subprocess
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed: formatting not checked")
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_CLI_CONFIG_FILE="/dev/null")
    out = subprocess.run([terraform, "fmt", "-check", "-recursive", "-list=true", str(TERRAFORM)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, f"terraform fmt would change: {out.stdout.strip()}"
