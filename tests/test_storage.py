"""nica.util.files: atomic writers (unique temporary files), read_json errors, claim files.

Concurrency tests run real processes that load ``nica/util/files.py`` by path (it imports only the
standard library and NumPy), so each starts in a fraction of a second.
"""

import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nica.util import files as storage
from nica.util.claims import claim, release
from nica.util.files import load_npz, read_json, save_npz, write_json, write_text

UTIL = Path(storage.__file__).resolve().parent

WORKER = """
import importlib.util, json, sys, time, types
from pathlib import Path
# nica.util.files and nica.util.claims by path: the workers start without importing JAX
for package in ("nica", "nica.util"):
    sys.modules[package] = types.ModuleType(package)
def load(name):
    path = Path(sys.argv[1]) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"nica.util.{name}", path)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
storage, claims = load("files"), load("claims")
job, target, go = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
deadline = time.time() + 20
while not go.exists() and time.time() < deadline:
    time.sleep(0.001)
if job == "write":
    for i in range(int(sys.argv[5])):
        storage.write_json(target, {"writer": sys.argv[6], "i": i, "pad": list(range(200))})
elif job == "read":
    bad = reads = 0
    end = time.time() + float(sys.argv[5])
    while time.time() < end:
        try:
            json.loads(target.read_bytes())
            reads += 1
        except FileNotFoundError:
            pass
        except ValueError:
            bad += 1
    print(bad, reads)
elif job == "claim":
    print(int(claims.claim(target, stale_after=float(sys.argv[5]))), flush=True)
    time.sleep(1.0)  # hold it while alive: a claim of an exited process may be taken over
"""


def _start(job: str, target: Path, go: Path, *args) -> subprocess.Popen:
    argv = [sys.executable, "-c", WORKER, str(UTIL), job, str(target), str(go)]
    return subprocess.Popen([*argv, *map(str, args)], stdout=subprocess.PIPE, text=True)


def _finish(processes: list[subprocess.Popen]) -> list[str]:
    outputs = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        outputs.append(out.strip())
    return outputs


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- writers -------------------------------------------------------------------------------

WRITERS = {
    "save_npz": (lambda p: save_npz(p, x=np.arange(3.0)), lambda p: load_npz(p)["x"].tolist()),
    "write_json": (lambda p: write_json(p, {"a": [1, 2]}), lambda p: read_json(p)),
    "write_text": (lambda p: write_text(p, "héllo\n"), lambda p: p.read_text("utf-8")),
}
EXPECTED = {"save_npz": [0.0, 1.0, 2.0], "write_json": {"a": [1, 2]}, "write_text": "héllo\n"}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writer_round_trips_overwrites_and_leaves_no_temporary(writer, tmp_path):
    write, read = WRITERS[writer]
    path = tmp_path / "out"
    path.write_bytes(b"old content")
    assert write(path) == path
    assert read(path) == EXPECTED[writer]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0o600


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writing_onto_a_folder_names_it_and_leaves_nothing(writer, tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    with pytest.raises(OSError, match="existing") as info:
        WRITERS[writer][0](folder)
    assert "\n" not in str(info.value) and ".tmp" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]
    assert not any(folder.iterdir())


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writing_into_a_missing_folder_names_the_path(writer, tmp_path):
    with pytest.raises(OSError, match=r"cannot write .*missing/out"):
        WRITERS[writer][0](tmp_path / "missing" / "out")


@pytest.mark.parametrize("writer", list(WRITERS))
def test_failed_replace_removes_the_temporary_file(writer, tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(storage.os, "replace", refuse)
    with pytest.raises(PermissionError, match="out"):
        WRITERS[writer][0](tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_save_npz_is_byte_deterministic_with_fixed_timestamps(tmp_path):
    arrays = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array('{"k": 1}')}
    first = save_npz(tmp_path / "1.npz", **arrays).read_bytes()
    time.sleep(1.1)  # zip timestamps have a 2 s resolution; a clock stamp could still differ
    assert save_npz(tmp_path / "2.npz", **arrays).read_bytes() == first
    with zipfile.ZipFile(tmp_path / "1.npz") as archive:
        assert [i.filename for i in archive.infolist()] == ["a.npy", "b.npy"]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    loaded = load_npz(tmp_path / "1.npz")
    assert loaded["b"].dtype == np.float32 and str(loaded["a"]) == '{"k": 1}'


def test_save_npz_refuses_object_arrays_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        save_npz(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such file"),
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b'{"a": ', r"invalid JSON \(Expecting value at line 1 column 7\)"),
        (b"\xff\xfe", "invalid JSON"),
        ("folder", "cannot read"),
    ],
    ids=["missing", "empty", "blank", "truncated", "binary", "folder"],
)
def test_read_json_errors_are_one_line_naming_the_file(content, match, tmp_path):
    path = tmp_path / "cell.json"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_json(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "no such file"), (b"not a zip", "cannot read as .npz"), ("npy", "single .npy")],
    ids=["missing", "text", "npy"],
)
def test_load_npz_errors_name_the_file(content, match, tmp_path):
    path = tmp_path / "d.npz"
    if content == "npy":
        np.save(tmp_path / "d.npy", np.ones(2))
        (tmp_path / "d.npy").rename(path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        load_npz(path)
    assert str(info.value).startswith(f"{path}: ")


def test_concurrent_writers_and_a_reader_never_collide(tmp_path):
    target, go = tmp_path / "shared.json", tmp_path / "go"
    writers = [_start("write", target, go, 300, name) for name in ("a", "b")]
    reader = _start("read", target, go, 1.0)
    go.touch()
    *_, read_out = _finish([*writers, reader])
    bad, reads = map(int, read_out.split())
    assert bad == 0 and reads > 0
    assert read_json(target)["i"] == 299
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "shared.json"]


# --- claims --------------------------------------------------------------------------------


def test_claim_is_exclusive_until_released(tmp_path):
    path = tmp_path / "cell.claim"
    assert claim(path, stale_after=60)
    record = read_json(path)
    assert record["pid"] == os.getpid() and abs(record["time"] - time.time()) < 60
    assert not claim(path, stale_after=60)  # held, also against its own process
    assert release(path) and not path.exists()
    assert not release(path)
    assert claim(path, stale_after=60)


def test_release_leaves_a_claim_taken_over_by_another_process(tmp_path):
    path = tmp_path / "cell.claim"
    write_json(path, {"pid": os.getpid() + 1, "host": "elsewhere", "time": time.time()})
    assert not release(path) and path.exists()


def test_stale_claim_is_taken_over_fresh_one_is_not(tmp_path):
    path = tmp_path / "cell.claim"
    write_json(path, {"pid": -1, "host": "dead", "time": 0})
    assert not claim(path, stale_after=60)
    old = time.time() - 120
    os.utime(path, (old, old))
    assert not claim(path, stale_after=600)
    assert claim(path, stale_after=60)
    assert read_json(path)["pid"] == os.getpid()
    assert _leftovers(tmp_path) == []


def test_fresh_claim_of_an_exited_process_on_this_host_is_taken_over(tmp_path):
    """A run killed before releasing its claims leaves them fresh; the owner's pid is gone."""
    path = tmp_path / "cell.claim"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    write_json(path, {"pid": int(finished.stdout), "host": host, "time": time.time()})
    assert claim(path, stale_after=3600)
    assert read_json(path)["pid"] == os.getpid()
    # A live owner on this host, or any owner elsewhere, keeps a fresh claim.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        try:
            for owner in ({"pid": alive.pid, "host": host}, {"pid": -1, "host": "elsewhere"}):
                write_json(path, {**owner, "time": time.time()})
                assert not claim(path, stale_after=3600), owner
        finally:
            alive.kill()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_racing_processes_get_exactly_one_claim(stale, tmp_path):
    path, go = tmp_path / "cell.claim", tmp_path / "go"
    if stale:
        write_json(path, {"pid": -1, "host": "dead", "time": 0})
        os.utime(path, (0, 0))
    racers = [_start("claim", path, go, 60) for _ in range(4)]
    time.sleep(0.3)  # let them load before the start signal
    go.touch()
    assert sorted(_finish(racers)) == ["0", "0", "0", "1"]
    assert read_json(path)["pid"] in {p.pid for p in racers}
    assert _leftovers(tmp_path) == []


def test_claim_refuses_a_non_positive_timeout(tmp_path):
    with pytest.raises(ValueError, match="stale_after"):
        claim(tmp_path / "c", stale_after=0)
