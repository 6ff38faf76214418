"""Publication killed at every step: nothing lost, nothing mixed served, leftovers cleaned next time.

Faults are injected at the hooks between the steps of a publish (``repository._step``) and of the
``<run>/openvino`` swap (``pipeline._swap_step``): as an exception in process, and as a real
SIGKILL of a subprocess that runs the publish up to the chosen step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from contracts.config import load_config
from contracts.errors import ModelRepositoryError, OptimizationError, ServingError
from contracts.model_repository import ModelRepository
from contracts.run_directory import RunDirectory
from workloads.optimize import pipeline, repository
from workloads.optimize.repository import publish, publish_lock, recover
from workloads.serving import local

PRECISIONS = ("fp32", "fp16", "int8")
ROOT = Path(__file__).resolve().parents[1]
# Every point a publish can die at, in order; after "committed" the new set is the served one.
STEPS = [
    *(f"staged {p}" for p in PRECISIONS),
    *(f"renamed {p}" for p in PRECISIONS),
    "committed",
    "configured",
]


def _ir(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.xml").write_text(f"<net name='{tag}'/>")
    (folder / "model.bin").write_bytes(tag.encode() * 10)
    return folder


def _card(path: Path, run_id: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model_name": "bone-marrow", "run_id": run_id, "image_size": 32}))
    return path


def _run(tmp_path: Path, run_id: str) -> tuple[dict[str, Path], Path]:
    irs = {p: _ir(tmp_path / run_id / "openvino" / p, f"{run_id}-{p}") for p in PRECISIONS}
    return irs, _card(tmp_path / run_id / "model_card.json", run_id)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with run r1 published as version 1 of every precision."""
    root = tmp_path / "models"
    publish(root, "bone-marrow", *_run(tmp_path, "r1"), progress=lambda _: None)
    return root


def _served(root: Path) -> dict[str, tuple[int, str | None, bytes]]:
    """What a reader (serving, bench) gets for each precision: version, run, model.bin."""
    models = ModelRepository(root).find_all("bone-marrow", PRECISIONS)
    return {m.precision: (m.version, m.run_id, m.bin.read_bytes()) for m in models}


def _pinned(root: Path) -> dict[str, list[int]]:
    """The versions config.json tells OVMS to serve."""
    config = json.loads((root / "config.json").read_text())
    return {
        e["config"]["name"]: e["config"]["model_version_policy"]["specific"]["versions"]
        for e in config["model_config_list"]
    }


def _leftovers(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.glob("bone-marrow-*/*")
        if p.name.startswith(".staging-") or p.name not in {"1", "2"}
    )


def _kill_publish_at(tmp_path: Path, root: Path, step: str) -> None:
    """Publish run r2 in a subprocess that SIGKILLs itself at ``step``."""
    irs, card = _run(tmp_path, "r2")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from workloads.optimize import repository

        def step(name):
            if name == {step!r}:
                os.kill(os.getpid(), signal.SIGKILL)

        repository._step = step
        irs = {{p: Path(f) for p, f in {json.dumps({p: str(f) for p, f in irs.items()})}.items()}}
        repository.publish(Path({str(root)!r}), "bone-marrow", irs, Path({str(card)!r}), progress=print)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.mark.parametrize("step", STEPS)
def test_a_publish_killed_at_any_step_serves_one_whole_set_and_is_cleaned_up_next_time(tmp_path, repo, step):
    before = _served(repo)
    assert {v for v, _, _ in before.values()} == {1}

    _kill_publish_at(tmp_path, repo, step)

    after = _served(repo)
    if STEPS.index(step) < STEPS.index("committed"):
        assert after == before  # nothing lost: the previous set, byte for byte
    else:
        assert {(v, run) for v, run, _ in after.values()} == {(2, "r2")}  # the new set, whole
    # Never a mix: every precision from one publish, and OVMS pinned to the same set or the previous one.
    assert len({(v, run) for v, run, _ in after.values()}) == 1
    pinned = _pinned(repo)
    assert len({tuple(v) for v in pinned.values()}) == 1
    if step != "committed":
        assert pinned == {f"bone-marrow-{p}": [after[p][0]] for p in PRECISIONS}

    lines: list[str] = []
    recover(repo, "bone-marrow", PRECISIONS, progress=lines.append)
    assert _leftovers(repo) == []
    committed = ModelRepository(repo).committed("bone-marrow")
    assert committed is not None
    assert all(ModelRepository(repo).versions("bone-marrow", p)[-1] == committed[p] for p in PRECISIONS)
    assert _pinned(repo) == {f"bone-marrow-{p}": [after[p][0]] for p in PRECISIONS}  # OVMS caught up
    if STEPS.index(step) < STEPS.index("committed"):
        assert len(lines) == 1 and lines[0].startswith("removed ") and "interrupted publish" in lines[0]

    # And the next publish works as if the killed one never ran.
    published = publish(repo, "bone-marrow", *_run(tmp_path, "r3"), progress=lambda _: None)
    assert {m.version for m in published} == {max(after["fp32"][0], 1) + 1}
    assert {run for _, run, _ in _served(repo).values()} == {"r3"}


@pytest.mark.parametrize("step", STEPS[:6])
def test_a_failure_at_any_step_before_the_commit_rolls_the_whole_publish_back(
    tmp_path, repo, step, monkeypatch
):
    before = _served(repo)
    config_before = (repo / "config.json").read_text()

    def fail(name: str) -> None:
        if name == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(repository, "_step", fail)
    with pytest.raises(KeyboardInterrupt):
        publish(repo, "bone-marrow", *_run(tmp_path, "r2"), progress=lambda _: None)
    assert _served(repo) == before
    assert _leftovers(repo) == []
    assert (repo / "config.json").read_text() == config_before


def test_an_uncommitted_version_folder_is_never_found(tmp_path, repo):
    _kill_publish_at(tmp_path, repo, "renamed fp16")  # fp32/2 and fp16/2 on disk, int8 still at 1
    assert ModelRepository(repo).versions("bone-marrow", "fp32") == [1, 2]
    assert ModelRepository(repo).find("bone-marrow", "fp32").version == 1
    with pytest.raises(
        ModelRepositoryError, match=r"^bone-marrow-fp32 version 2 in .* is not committed"
    ) as error:
        ModelRepository(repo).find("bone-marrow", "fp32", 2)
    assert "\n" not in str(error.value)


def test_a_precision_outside_the_committed_set_is_refused(tmp_path, repo):
    irs, card = _run(tmp_path, "r2")
    publish(repo, "bone-marrow", {"fp32": irs["fp32"], "int8": irs["int8"]}, card, progress=lambda _: None)
    assert [m.version for m in ModelRepository(repo).find_all("bone-marrow", ["fp32", "int8"])] == [2, 2]
    with pytest.raises(ModelRepositoryError, match=r"^bone-marrow-fp16 is not in the committed version set"):
        ModelRepository(repo).find("bone-marrow", "fp16")  # its version 1 is from r1, not r2


def _legacy_mixed(root: Path) -> None:
    """What a publish killed midway left before version_set.json existed: fp32 at 3, fp16/int8 at 2."""
    for precision, version in (("fp32", 3), ("fp16", 2), ("int8", 2)):
        folder = _ir(root / f"bone-marrow-{precision}" / str(version), f"{precision}{version}")
        _card(folder / "model_card.json", f"run{version}")


def test_up_refuses_newest_versions_that_do_not_belong_together_in_one_line(tmp_path):
    _legacy_mixed(tmp_path / "models")
    config = load_config(
        {"artifacts_dir": str(tmp_path), "serving": {"precisions": ["fp32", "fp16", "int8"], "http_port": 1}}
    )
    with pytest.raises(ServingError) as error:
        local.start(config, progress=lambda _: None)
    message = str(error.value)
    assert "\n" not in message
    assert "do not belong together (bone-marrow-fp32 3, bone-marrow-fp16 2, bone-marrow-int8 2)" in message
    assert not (config.paths.local_server / "server.pid").exists()


def test_a_legacy_repository_is_adopted_when_whole_and_not_when_mixed(tmp_path):
    whole = tmp_path / "whole"
    for precision in PRECISIONS:
        _card(_ir(whole / f"bone-marrow-{precision}" / "2", precision) / "model_card.json", "old")
    recover(whole, "bone-marrow", PRECISIONS, progress=lambda _: None)
    assert ModelRepository(whole).committed("bone-marrow") == {p: 2 for p in PRECISIONS}

    # The case: a publish killed midway left fp32 at 3, fp16 and int8 at 2.
    interrupted = tmp_path / "interrupted"
    _legacy_mixed(interrupted)
    for precision in ("fp32",):
        _card(_ir(interrupted / f"bone-marrow-{precision}" / "2", precision) / "model_card.json", "run2")
    lines: list[str] = []
    recover(interrupted, "bone-marrow", PRECISIONS, progress=lines.append)
    assert ModelRepository(interrupted).committed("bone-marrow") == {p: 2 for p in PRECISIONS}
    assert lines == [
        "removed 1 leftover(s) of an interrupted publish (the committed set is kept): bone-marrow-fp32/3"
    ]

    mixed = tmp_path / "mixed"
    _legacy_mixed(mixed)  # no version that every precision has
    recover(mixed, "bone-marrow", PRECISIONS, progress=lambda _: None)
    assert ModelRepository(mixed).committed("bone-marrow") == {}  # nothing served until republished
    with pytest.raises(ModelRepositoryError, match="not in the committed version set"):
        ModelRepository(mixed).find_all("bone-marrow", PRECISIONS)
    assert ModelRepository(mixed).versions("bone-marrow", "fp32") == [3]  # kept, not guessed at
    publish(mixed, "bone-marrow", *_run(tmp_path, "r4"), progress=lambda _: None)
    assert {(v, run) for v, run, _ in _served(mixed).values()} == {(4, "r4")}


def test_one_publish_at_a_time(tmp_path, repo):
    with publish_lock(repo):
        with pytest.raises(OptimizationError, match=r"another publish to .* is running"):
            publish(repo, "bone-marrow", *_run(tmp_path, "r2"), progress=lambda _: None)
        lines: list[str] = []
        assert recover(repo, "bone-marrow", PRECISIONS, progress=lines.append) == []
        assert lines and lines[0].startswith("not cleaning up the model repository now")
    assert ModelRepository(repo).committed("bone-marrow") == {p: 1 for p in PRECISIONS}


def _run_dir(tmp_path: Path) -> RunDirectory:
    run = RunDirectory(tmp_path / "runs" / "r1")
    _ir(run.openvino / "fp32", "accepted")
    return run


def test_a_swap_killed_between_its_renames_gets_openvino_back_on_the_next_optimize(tmp_path):
    run = _run_dir(tmp_path)
    staging = run.path / ".openvino-staging-abc"
    _ir(staging / "fp32", "new")
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from workloads.optimize import pipeline

        pipeline._swap_step = lambda name: os.kill(os.getpid(), signal.SIGKILL)
        pipeline._replace_dir(Path({str(staging)!r}), Path({str(run.openvino)!r}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not run.openvino.exists()  # what the kill left: the old folder aside, the new one staged

    lines: list[str] = []
    pipeline.recover_run_dir(run, lines.append)
    assert (run.openvino / "fp32" / "model.bin").read_bytes() == b"accepted" * 10
    assert sorted(p.name for p in run.path.iterdir()) == ["openvino"]
    assert len(lines) == 1 and "restored openvino/" in lines[0] and ".openvino-staging-abc" in lines[0]


def test_killed_attempts_are_removed_but_a_live_one_is_kept(tmp_path):
    run = _run_dir(tmp_path)
    dead = run.path / ".openvino-staging-dead"
    (dead / "int8").mkdir(parents=True)
    (dead / "int8" / "model.bin").write_bytes(b"")  # a 0-byte model.bin, as a kill mid-write leaves
    (run.path / ".openvino-old-x").mkdir()  # a swap killed after its second rename
    (run.path / ".openvino-rejected-old-y").mkdir()  # ... of a rejected attempt, not yet replaced
    live = run.path / ".openvino-staging-live"
    live.mkdir()
    lock = pipeline._lock_dir(live)
    assert lock is not None
    try:
        pipeline.recover_run_dir(run, lambda _: None)
    finally:
        os.close(lock)
    assert sorted(p.name for p in run.path.iterdir()) == [
        ".openvino-staging-live",
        "openvino",
        "openvino-rejected",
    ]
    pipeline.recover_run_dir(run, lambda _: None)
    assert sorted(p.name for p in run.path.iterdir()) == ["openvino", "openvino-rejected"]


def test_ovms_in_the_clusters_is_pinned_to_the_committed_set(tmp_path):
    from workloads.k8s.ovms import server_config

    config = load_config({"artifacts_dir": str(tmp_path)})
    # No repository here (rendering offline): OVMS picks the highest.
    unpinned = server_config(config, config.serving.precisions)
    assert all("model_version_policy" not in e["config"] for e in unpinned["model_config_list"])

    publish(tmp_path / "models", "bone-marrow", *_run(tmp_path, "r1"), progress=lambda _: None)
    _kill_publish_at(tmp_path, tmp_path / "models", "renamed int8")  # version 2 folders, uncommitted
    pinned = server_config(config, config.serving.precisions)
    assert [e["config"]["model_version_policy"] for e in pinned["model_config_list"]] == [
        {"specific": {"versions": [1]}} for _ in config.serving.precisions
    ]

    irs, card = _run(tmp_path, "r3")
    publish(tmp_path / "models", "bone-marrow", {"fp32": irs["fp32"]}, card, progress=lambda _: None)
    with pytest.raises(ModelRepositoryError, match=r"^bone-marrow-int8 is not in the committed version set"):
        server_config(config, config.serving.precisions)


def test_a_first_publish_killed_midway_serves_nothing(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    _kill_publish_at(tmp_path, root, "renamed fp32")  # fp32/1 on disk, nothing committed
    with pytest.raises(
        ModelRepositoryError, match=r"^bone-marrow-fp32 is not in the committed version set .*\(none yet\)"
    ):
        ModelRepository(root).find_all("bone-marrow", ["fp32"])
    published = publish(root, "bone-marrow", *_run(tmp_path, "r3"), progress=lambda _: None)
    assert {(m.version, m.run_id) for m in published} == {(2, "r3")}


def test_up_serves_the_committed_set_and_names_what_it_leaves_out(tmp_path, monkeypatch):
    root = tmp_path / "models"
    publish(root, "bone-marrow", *_run(tmp_path, "r1"), progress=lambda _: None)
    _kill_publish_at(tmp_path, root, "renamed int8")
    config = load_config({"artifacts_dir": str(tmp_path), "serving": {"precisions": ["fp32", "int8"]}})
    seen: list[list[tuple[str, int]]] = []

    def stop_here(models):  # what start() would go on to serve; nothing is spawned in this test
        seen.append([(m.name, m.version) for m in models])
        raise ServingError("stop")

    monkeypatch.setattr(local, "verify_models", stop_here)
    lines: list[str] = []
    with pytest.raises(ServingError, match="stop"):
        local.start(config, progress=lines.append)
    assert seen == [[("bone-marrow-fp32", 1), ("bone-marrow-int8", 1)]]
    assert lines == [
        "not serving bone-marrow-fp32/2, bone-marrow-int8/2: left by an interrupted publish, never committed "
        "(the next `invoke optimize` removes them); serving the committed version set"
    ]
