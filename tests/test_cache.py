"""JAX's persistent compilation cache, on by default (nica/util/cache.py): where it goes, how it
is moved or turned off, that a folder it cannot trust is refused, and that a second process
really loads what the first compiled."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

import nica
from nica.apps.cli import main
from nica.util import cache

_SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)
_HITS = "/jax/compilation_cache/cache_hits"


@pytest.fixture
def jax_settings(monkeypatch, tmp_path):
    """A process as if nothing had configured JAX's cache (no folder; JAX's thresholds), HOME
    and XDG_CACHE_HOME under ``tmp_path``; restores JAX's settings afterwards."""
    saved = {name: getattr(jax.config, name) for name in _SETTINGS}
    for name in (cache.CACHE_ENV, *(name.upper() for name in _SETTINGS)):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax_cache.reset_cache()
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    jax_cache.reset_cache()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_folder_is_xdg_cache_home_else_home_dot_cache(jax_settings, monkeypatch, tmp_path):
    home = tmp_path / "home"
    assert cache.default_cache_dir() == home / ".cache" / "nica" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_cache_dir() == tmp_path / "xdg" / "nica" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # not absolute: ignored (XDG spec)
    assert cache.default_cache_dir() == home / ".cache" / "nica" / "jax"


def test_import_default_creates_a_private_folder_and_caches_every_program(
    jax_settings, monkeypatch, tmp_path
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    previous = os.umask(0)  # the folder is 0o700 whatever the umask
    try:
        folder = cache.enable_default_cache()
    finally:
        os.umask(previous)
    assert folder == tmp_path / "xdg" / "nica" / "jax"
    assert folder.is_dir() and _mode(folder) == 0o700
    assert cache.cache_dir() == jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1


def test_env_var_moves_the_cache_and_off_turns_it_off(jax_settings, monkeypatch, tmp_path):
    moved = tmp_path / "moved" / "here"
    monkeypatch.setenv(cache.CACHE_ENV, str(moved))
    assert cache.enable_default_cache() == moved and _mode(moved) == 0o700
    assert jax.config.jax_compilation_cache_dir == str(moved)

    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv(cache.CACHE_ENV, "Off")
    assert cache.enable_default_cache() is None
    assert cache.cache_dir() is None
    assert not (tmp_path / "home").exists()  # nothing created in the default place


def test_the_users_own_jax_settings_are_kept(jax_settings, monkeypatch, tmp_path):
    theirs = str(tmp_path / "theirs")
    jax.config.update("jax_compilation_cache_dir", theirs)
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "ours"))
    assert cache.enable_default_cache() is None
    assert jax.config.jax_compilation_cache_dir == theirs
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0  # untouched
    assert not (tmp_path / "ours").exists()
    # A threshold set by its JAX_* variable is kept when nica sets the folder.
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1.0")
    assert cache.enable_default_cache() == tmp_path / "ours"
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1


def _world_writable(tmp_path: Path) -> Path:
    (folder := tmp_path / "c").mkdir()
    folder.chmod(0o777)
    return folder


def _group_writable(tmp_path: Path) -> Path:
    (folder := tmp_path / "c").mkdir()
    folder.chmod(0o770)
    return folder


def _a_file(tmp_path: Path) -> Path:
    (path := tmp_path / "c").write_text("")
    return path


def _under_a_file(tmp_path: Path) -> Path:  # cannot be created, even by root
    (tmp_path / "file").write_text("")
    return tmp_path / "file" / "c"


UNSAFE = {
    "world-writable": (_world_writable, "writable by group or others"),
    "group-writable": (_group_writable, "writable by group or others"),
    "a-file": (_a_file, "is not a folder"),
    "under-a-file": (_under_a_file, "cannot create"),
}


@pytest.mark.parametrize("make, message", UNSAFE.values(), ids=UNSAFE.keys())
def test_an_unsafe_folder_is_refused_with_one_warning(
    jax_settings, monkeypatch, tmp_path, make, message
):
    target = make(tmp_path)
    monkeypatch.setenv(cache.CACHE_ENV, str(target))
    with pytest.warns(RuntimeWarning, match=message) as caught:
        assert cache.enable_default_cache() is None
    assert len(caught) == 1 and cache.CACHE_ENV in str(caught[0].message)
    assert jax.config.jax_compilation_cache_dir is None  # no cache, and no error
    with pytest.raises(ValueError, match=message):
        nica.set_cache_dir(target)
    assert jax.config.jax_compilation_cache_dir is None


def test_a_folder_of_another_user_is_refused(jax_settings, monkeypatch, tmp_path):
    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(os, "getuid", lambda: folder.stat().st_uid + 1)
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    with pytest.warns(RuntimeWarning, match="belongs to another user"):
        assert cache.enable_default_cache() is None
    assert jax.config.jax_compilation_cache_dir is None


def test_set_cache_dir_overrides_everything_and_none_turns_it_off(jax_settings, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    assert nica.set_cache_dir(tmp_path / "mine") == tmp_path / "mine"
    assert cache.cache_dir() == str(tmp_path / "mine") and _mode(tmp_path / "mine") == 0o700
    assert nica.set_cache_dir(None) is None and cache.cache_dir() is None
    with pytest.raises(ValueError, match="a path or None"):
        nica.set_cache_dir("")


def test_help_says_where_programs_are_cached(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"cached in {cache.cache_dir()}" in text and f"{cache.CACHE_ENV}=off" in text


_PROBE = """
import jax, jax.numpy as jnp, nica
hits = []
jax.monitoring.register_event_listener(lambda event, **_: hits.append(event))
jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.ones(4)).block_until_ready()
print(hits.count("{hits}"), jax.config.jax_compilation_cache_dir)
""".replace("{hits}", _HITS)


def _probe(**env: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    return subprocess.Popen(
        [sys.executable, "-c", _PROBE], env={**environ, **env}, stdout=subprocess.PIPE, text=True
    )


def _result(process: subprocess.Popen) -> tuple[int, str]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    hits, folder = out.split()
    return int(hits), folder


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    first = _probe(NICA_CACHE_DIR=str(ours))
    user = _probe(
        NICA_CACHE_DIR=str(tmp_path / "unused"),
        JAX_COMPILATION_CACHE_DIR=str(theirs),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",  # JAX's default would skip tiny programs
    )
    assert _result(first) == (0, str(ours))
    written = _entries(ours)
    assert written  # the tiny program was cached (no compile-time threshold)
    assert _result(user) == (0, str(theirs)) and _entries(theirs)  # the user's folder is kept
    assert not (tmp_path / "unused").exists()

    hits, _ = _result(_probe(NICA_CACHE_DIR=str(ours)))
    assert hits >= 1 and _entries(ours) == written  # loaded, nothing compiled again


def test_time_to_result_smoke_second_process_gives_the_same_fit_and_resumes(tmp_path):
    """experiments.time_to_result: two fresh `nica fit` processes on one cache folder give the
    same fit (a cached program computes what a compiled one does); a rerun keeps the
    records and runs nothing."""
    from experiments import time_to_result

    records = time_to_result.main(["--smoke", "--out", str(tmp_path)])
    first, second = records
    assert (first["job"], first["mode"], second["mode"]) == ("fit", "first", "second")
    assert first["process_s"] > 0 and second["process_s"] > 0
    for key in ("val_nll", "mcc_pearson", "nll_gap"):
        assert second[key] == first[key]
    report = (tmp_path / "report.md").read_text()
    assert "| current |" in report and "| fit | second |" in report

    again = time_to_result.main(["--smoke", "--out", str(tmp_path)])
    assert again == records
