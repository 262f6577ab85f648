"""The GPU suite: one prepared run of the device checks, under 8 minutes, into ``results/gpu/``.

For a session that is lent a GPU for a few minutes (issues 26 and 27). It runs three parts, one
after the other, each a separate process of an existing experiment script with GPU-sized
arguments and a time limit of its own (so one slow or failing part never costs the others):

* ``cost``: ``experiments.gradient_cost``, the full-step and gradient cost against ``D`` up to
  32768 (batch 100, depth 2): the relative gradient's O(L B D^2) step against plain backprop
  and the ordinary gradient, side by side;
* ``throughput``: ``experiments.throughput``, samples per second of a default fit's epoch at
  ``D`` = 5 .. 1024 with 1 to 256 seeds vmapped in one program;
* ``identifiability``: ``experiments.scale_probe``, one default fit of 100 sources (400
  segments x 250 points, the ``dimension`` sweep's 3-layer mixing), scored against the truth:
  MCC, held-out and training NLL gap.

Each part writes into ``OUT/<part>/`` as it goes (the scripts rewrite their JSON after every
record), so a part stopped at its limit keeps what it finished. ``OUT/suite.json`` and
``OUT/report.md`` record the device (read by a child process, so this one never holds GPU
memory), the versions, and per part its command, status (``done``, ``stopped at its time
limit`` or ``failed``), seconds and the last lines it printed.

Command on the lent machine (its image has JAX with CUDA, Flax, Optax, SciPy, matplotlib and
scikit-learn; nothing to install), from the repository root::

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 -m experiments.gpu_suite --out results/gpu

``--parts`` runs a subset; ``--smoke`` runs every part at its smoke size (a CPU is enough).

If device time remains, the next measurement (not a part: the suite keeps to 8 minutes) is the
best of 16 full-length restarts on the 4-layer mixing, which on a GPU should cost about the
default fit's wall time (docs/models.md)::

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 -m experiments.scale_probe --out results/gpu/restarts \
        --config depth --setting L=4 --seeds 0 1 2 3 4 5 --name best16full \
        --set depth=5 --set restarts=16 --set restart_epochs=300
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from experiments import harness
from nica.util.files import write_json, write_text

#: The data of the 100-source fit: the ``dimension`` sweep's mixing with D = 100 and the
#: sample size of its D = 50 setting (4 segments per source).
D100_DATA = ("n_sources=100", "n_segments=400", "samples_per_segment=250")


class Part(NamedTuple):
    """One part of the suite: a module run as ``python -m module --out OUT/name *args``.

    Attributes:
      name: its folder under the suite's ``--out``.
      module: the experiment script.
      args: its arguments (``--out`` added).
      limit_s: seconds it may run before it is stopped.
      about: what it measures, for the report.
    """

    name: str
    module: str
    args: tuple[str, ...]
    limit_s: float
    about: str


def _probe_args(seeds: Sequence[int], data: Sequence[str], sets: Sequence[str], name: str):
    return (
        "--config",
        "dimension",
        "--setting",
        "D=50",
        "--seeds",
        *map(str, seeds),
        "--name",
        name,
        *(arg for d in data for arg in ("--data", d)),
        *(arg for s in sets for arg in ("--set", s)),
    )


#: Writes the probe's ``report.md`` from its JSON (seconds).
_PROBE_REPORT = Part(
    "identifiability", "experiments.scale_probe", ("--report",), 60, "the fit's report"
)

#: The GPU-sized parts: limits sum to 460 s, inside the 8 minutes with start-up to spare.
PARTS = (
    Part(
        "cost",
        "experiments.gradient_cost",
        ("--batch", "100", "--depth", "2", "--repeats", "5", "--min-seconds", "0.3"),
        100,
        "step and gradient cost vs D up to 32768 (batch 100, depth 2)",
    ),
    Part(
        "throughput",
        "experiments.throughput",
        ("--dims", "5", "50", "256", "1024", "--seeds", "1", "16", "256", "--epochs", "4"),
        90,
        "samples/s of a default fit's epoch, D = 5 .. 1024, 1 to 256 seeds vmapped",
    ),
    Part(
        "identifiability",
        "experiments.scale_probe",
        _probe_args([0], D100_DATA, [], "D100-400x250-defaults"),
        210,
        "one default fit of 100 sources (400 segments x 250), MCC and NLL gaps",
    ),
    _PROBE_REPORT,
)

#: The same parts at smoke size (seconds on a CPU; used by the tests).
SMOKE_PARTS = (
    Part("cost", "experiments.gradient_cost", ("--smoke",), 120, PARTS[0].about),
    Part("throughput", "experiments.throughput", ("--smoke",), 120, PARTS[1].about),
    Part(
        "identifiability",
        "experiments.scale_probe",
        _probe_args(
            [0],
            ("n_sources=3", "n_segments=8", "samples_per_segment=60"),
            ("depth=1", "restarts=1", "epochs=2"),
            "smoke",
        ),
        120,
        "one fit of 3 sources (smoke size)",
    ),
    _PROBE_REPORT,
)

_DEVICE_CODE = (
    "import json, jax; d = jax.devices()[0]; print(json.dumps({'backend': jax.default_backend(),"
    " 'device': d.device_kind, 'devices': jax.device_count(), 'jax': jax.__version__}))"
)


def _tail(text: str, lines: int = 8) -> list[str]:
    return text.strip().splitlines()[-lines:]


def device_info(python: str = sys.executable, limit_s: float = 120) -> dict:
    """The default JAX device as a child process sees it (this process never starts JAX)."""
    try:
        done = subprocess.run(
            [python, "-c", _DEVICE_CODE], capture_output=True, text=True, timeout=limit_s
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {limit_s:.0f} s"}
    except OSError as error:
        return {"error": f"could not start {python}: {error.strerror}"}
    if done.returncode != 0:
        return {"error": " | ".join(_tail(done.stderr, 3))}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_part(part: Part, out: Path, *, python: str = sys.executable) -> dict:
    """Runs one part in its own process, stopped after ``part.limit_s``; returns its record."""
    folder = out / part.name
    command = [python, "-m", part.module, "--out", str(folder), *part.args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=part.limit_s)
        status = "done" if done.returncode == 0 else f"failed (exit status {done.returncode})"
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as stopped:
        status = "stopped at its time limit"
        output = "".join(
            s.decode(errors="replace") if isinstance(s, bytes) else (s or "")
            for s in (stopped.stdout, stopped.stderr)
        )
    return {
        "part": part.name,
        "about": part.about,
        "command": " ".join(["python", *command[1:]]),
        "limit_s": part.limit_s,
        "seconds": round(time.perf_counter() - start, 1),
        "status": status,
        "files": sorted(p.name for p in folder.glob("*")) if folder.exists() else [],
        "output_tail": _tail(output),
    }


def markdown(suite: dict) -> str:
    """The suite's ``report.md``: the device, then one row per part and links to its report."""
    device = suite["device"]
    where = device.get("error") or (
        f"{device['backend']}: {device['device']} x {device['devices']} (jax {device['jax']})"
    )
    rows = [
        [
            p["part"],
            p["about"],
            p["status"],
            f"{p['seconds']:.0f} / {p['limit_s']:.0f}",
            f"[{p['part']}/report.md]({p['part']}/report.md)"
            if "report.md" in p["files"]
            else ", ".join(p["files"]) or "nothing",
        ]
        for p in suite["parts"]
    ]
    commands = [f"- {p['part']}: `{p['command']}`" for p in suite["parts"]]
    return "\n".join(
        [
            "# GPU suite",
            "",
            f"Device: {where}. Generated by `python -m experiments.gpu_suite`"
            f" ({suite['total_s']:.0f} s in all). Each part ran in its own process with a"
            " time limit; a part stopped at its limit keeps the records it had written.",
            "",
            harness.markdown_table(["part", "measures", "status", "s / limit", "results"], rows),
            "",
            "Commands:",
            "",
            *commands,
            "",
        ]
    )


def run_suite(parts: Sequence[Part], out: Path, *, python: str = sys.executable) -> dict:
    """Runs ``parts`` in order into ``out``; writes ``suite.json`` and ``report.md`` after
    each part (a suite cut short keeps the parts it finished)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    suite = {"device": device_info(python), "parts": [], "total_s": 0.0}
    for part in parts:
        suite["parts"].append(run_part(part, out, python=python))
        suite["total_s"] = round(time.perf_counter() - start, 1)
        write_json(out / "suite.json", suite, indent=1)
        write_text(out / "report.md", markdown(suite))
        print(f"gpu_suite: {part.name}: {suite['parts'][-1]['status']}", flush=True)
    return suite


def main(argv: Sequence[str] | None = None) -> dict:
    parser = harness.experiment_parser(__doc__, out=Path("results/gpu"))
    names = list(dict.fromkeys(p.name for p in PARTS))
    parser.add_argument("--parts", nargs="+", choices=names, default=names)
    args = parser.parse_args(argv)
    chosen = [p for p in (SMOKE_PARTS if args.smoke else PARTS) if p.name in args.parts]
    return run_suite(chosen, args.out)


if __name__ == "__main__":
    main()
