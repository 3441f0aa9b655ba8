"""Two first runs on one fresh cache: only one generates the world, the other waits and reuses it.

On the unlocked version both generated and the second replaced the directory the first was
already reading from (``sem_0006.mp4: video file not found``); here both get the same directory.
"""

from __future__ import annotations

import multiprocessing
import os

from instract_eval.synth import ensure_world


def _ensure(out: str, start, results) -> None:
    start.wait()
    manifest = ensure_world(out, seed=0, size="tiny")
    results.put((os.stat(out).st_ino, manifest.seconds > 0, len(os.listdir(os.path.join(out, "videos")))))


def test_two_processes_share_one_generated_world(tmp_path):
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    out = str(tmp_path / "cache" / "synth-world")
    workers = [context.Process(target=_ensure, args=(out, start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    first, second = results.get(timeout=5), results.get(timeout=5)
    assert first[0] == second[0], "the world directory was replaced while the other process used it"
    assert first[2] == second[2] > 0
    assert sorted([first[1], second[1]]) == [False, True]  # exactly one generated (its manifest has seconds)
