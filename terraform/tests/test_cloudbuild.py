"""cloudbuild.yaml builds, pushes and deploys every function in functions/ (a new function
directory without its steps fails here), by digest, after migrations; the Dockerfile has a
slim non-root target for each image."""

import re

import pytest
import yaml

from conftest import ROOT, functions, load_module, MODULES

IMAGES_BEYOND_FUNCTIONS = ["migrate"]


@pytest.fixture(scope="module")
def build():
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def steps(build):
    return {s["id"]: s for s in build["steps"]}


def script(step) -> str:
    return " ".join(str(a) for a in step.get("args", []))


def images():
    # the runner is specified now and lands with functions/runner
    return sorted(set(functions()) | {"runner"} | set(IMAGES_BEYOND_FUNCTIONS))


def test_substitutions_are_documented_and_regional(build):
    header = (ROOT / "cloudbuild.yaml").read_text().split("substitutions:")[0]
    for name in build["substitutions"]:
        assert name in header, f"substitution {name} is not documented in the header"
    assert build["substitutions"]["_REGION"] == "southamerica-west1"


def test_checks_step_is_kept_first(build):
    first_step = build["steps"][0]
    assert first_step["id"] == "fmt-clippy-build"
    assert "cargo clippy --workspace --all-targets -- -D warnings" in script(first_step)


@pytest.mark.parametrize("image", images())
def test_every_image_is_built_pushed_and_deployed(build, image):
    s = steps(build)
    assert f"build-{image}" in s, f"no build-{image} step"
    b = s[f"build-{image}"]
    assert b["args"][:3] == ["build", "--target", image]
    assert f"${{_REGISTRY}}/{image}:${{COMMIT_SHA}}" in b["args"]
    assert f"push-{image}" in s, f"no push-{image} step"
    p = script(s[f"push-{image}"])
    assert f'docker push "${{_REGISTRY}}/{image}:${{COMMIT_SHA}}"' in p
    assert f"/workspace/{image}.digest" in p and "RepoDigests" in p
    assert f"build-{image}" in s[f"push-{image}"]["waitFor"]


@pytest.mark.parametrize("function", sorted(set(functions()) | {"runner"}))
def test_every_function_is_deployed_by_digest_after_migrations(build, function):
    s = steps(build)
    assert f"deploy-{function}" in s, f"functions/{function} has no deploy-{function} step"
    d = s[f"deploy-{function}"]
    assert d["waitFor"] == ["migrate"]
    text = script(d)
    assert f'--image="$$(cat /workspace/{function}.digest)"' in text, "deploys must name the pushed digest"
    assert ":${COMMIT_SHA}" not in text
    # every Cloud Run service of the function (or the runner job) is updated
    platform = load_module(MODULES / "platform")
    services = [k for k, v in platform.locals()["services"].items() if v["function"] == function]
    if services:
        for svc in services:
            assert f'"${{_PREFIX}}-{svc}"' in text, f"deploy-{function} misses {svc}"
        assert "gcloud run services update" in text
    else:
        assert f'gcloud run jobs update "${{_PREFIX}}-{function}"' in text


def test_migrations_run_as_the_migrate_job_before_deploys(build):
    s = steps(build)
    m = s["migrate"]
    text = script(m)
    assert 'gcloud run jobs update "${_PREFIX}-migrate"' in text and "/workspace/migrate.digest" in text
    assert 'gcloud run jobs execute "${_PREFIX}-migrate" --region="${_REGION}" --wait' in text
    assert "push-migrate" in m["waitFor"]
    deploys = [k for k in s if k.startswith("deploy-")]
    assert deploys and all(s[k]["waitFor"] == ["migrate"] for k in deploys)


# ---- Dockerfile --------------------------------------------------------------------------

def dockerfile_stages():
    text = (ROOT / "Dockerfile").read_text()
    stages = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line)
        if m:
            current = m.group(2)
            stages[current] = {"from": m.group(1), "lines": []}
        elif current:
            stages[current]["lines"].append(line)
    return text, stages


def test_dockerfile_caches_dependencies_in_their_own_layer():
    text, stages = dockerfile_stages()
    assert "cargo chef cook --release --locked" in "\n".join(stages["deps"]["lines"])
    assert "cargo install cargo-chef --locked --version" in text
    assert stages["builder"]["from"] == "deps"


@pytest.mark.parametrize("image", images())
def test_every_image_has_a_slim_non_root_target(image):
    text, stages = dockerfile_stages()
    assert image in stages, f"Dockerfile has no target {image}"
    body = "\n".join(stages[image]["lines"])
    user = re.findall(r"^USER\s+(\S+)", body, re.M)
    assert user and not user[-1].startswith("root") and not user[-1].startswith("0"), image
    if image == "runner":
        assert stages[image]["from"] == "${RUNNER_BASE}"
        assert "ffmpeg" in body and "/out/demo-agent" in body
    else:
        assert stages[image]["from"] == "${DISTROLESS}"
        assert f"/out/{image}" in body
    assert "ARG DISTROLESS=gcr.io/distroless/cc-debian12:nonroot" in text
    assert f"--bin {image}" in text
