"""Several real processes on one cache: simultaneous writers of the same entry never leave a torn one, and a
writer killed with SIGKILL in the middle of storing leaves nothing a reader would trust."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

import stemkit
from stemkit.cache import CachedSeparator, CacheWarning, ResultCache

WORKER = r"""
import hashlib, json, sys, warnings
import stemkit
from stemkit.cache import CacheWarning
warnings.simplefilter("error", CacheWarning)  # a damaged entry seen by this process fails it
song, cache = sys.argv[1], sys.argv[2]
sep = stemkit.load("dsp", cache=cache)
print("ready", flush=True)
sys.stdin.readline()  # every process starts at the same moment
out = []
for _ in range(2):
    result = sep.separate(song, stems=["vocals", "instrumental"])
    digest = hashlib.sha256(b"".join(result[n].audio.tobytes() for n in sorted(result))).hexdigest()
    out.append({"hit": result.provenance.cache is not None, "digest": digest})
print(json.dumps(out), flush=True)
"""

STALLED = r"""
import sys
import stemkit
import stemkit.cache.store as store
real = store.write_float_wav
def stall(path, blocks, **shape):
    answer = real(path, blocks, **shape)
    print("stored one stem", flush=True)
    sys.stdin.readline()  # killed here, halfway through the entry
    return answer
store.write_float_wav = stall
stemkit.separate(sys.argv[1], provider="dsp", stems=["vocals", "instrumental"], cache=sys.argv[2])
"""


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_processes_storing_the_same_entry_at_once_never_tear_it(song: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    workers = [start(WORKER, str(song), str(root)) for _ in range(4)]
    try:
        for proc in workers:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=240) for proc in workers]
    finally:
        for proc in workers:
            proc.kill()
    for proc, (_stdout, stderr) in zip(workers, outputs, strict=True):
        assert proc.returncode == 0, stderr
    runs = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert len({run["digest"] for result in runs for run in result}) == 1  # every process, every call: equal
    assert all(result[1]["hit"] for result in runs)  # the second call of each process is a hit
    cache = ResultCache(root)
    assert cache.info().entries == 1
    assert cache.info().incomplete == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        hit = stemkit.separate(song, provider="dsp", stems=["vocals", "instrumental"], cache=cache)
    assert hit.provenance.cache is not None
    expected = stemkit.separate(song, provider="dsp", stems=["vocals", "instrumental"], cache=False)
    assert all(np.array_equal(hit[n].audio, expected[n].audio) for n in expected)


def test_a_writer_killed_mid_entry_leaves_nothing_a_reader_trusts(song: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    proc = start(STALLED, str(song), str(root))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "stored one stem"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    sep = CachedSeparator(stemkit.load("dsp"), ResultCache(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # nothing torn is found, so nothing damaged either
        assert sep.lookup(song, stems=["vocals", "instrumental"]) is None
        sep.separate(song, stems=["vocals", "instrumental"])
        assert sep.lookup(song, stems=["vocals", "instrumental"]) is not None
    staging = list((root / "tmp").glob("stage-*"))
    assert staging  # the dead writer's private folder, until a prune finds its process gone
    assert ResultCache(root).prune().leftovers >= 1
    assert not any(p.exists() for p in staging)
