"""Flow tables that ship inside flowjax, found by name so that `--data=lab` needs no download.

Each dataset lives in its own folder beside this file with a README that says how it
was made and how to rebuild it. Pure Python: `flowjax.io` resolves names through
here without importing anything heavy.
"""

from __future__ import annotations

import os
from pathlib import Path

# Name -> file, relative to this folder.
DATASETS: dict[str, str] = {
    # 4 hosts in network namespaces: benign web/DNS/SSH/FTP traffic, a port scan, a SYN flood,
    # SSH and FTP brute force, a slow-HTTP attack; cicflowmeter 0.5 flows. See lab/README.md.
    "lab": "lab/flows.csv.gz",
    # The same lab for 20 minutes: 11 hosts (8 benign client hosts, heavy and light users, 2
    # attackers); the same attacks, 10 of them at seeded times across the capture, interleaved
    # with the benign traffic. For models of hosts, ports and time. See lab-trace/README.md.
    "lab-trace": "lab-trace/flows.csv.gz",
}


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Returns the file behind a shipped dataset name, or an existing path itself.

    Args:
      name_or_path: a name in `DATASETS` (checked first) or a path to a flow table.

    Returns:
      The path of the file to load.

    Raises:
      ValueError: the name is not shipped and no such file exists (the message lists
        the known names), or a shipped file is missing from the installation.
    """
    name = os.fspath(name_or_path)
    if name in DATASETS:
        path = Path(__file__).resolve().parent / DATASETS[name]
        if not path.is_file():
            raise ValueError(f"dataset {name!r}: {path} is missing from this installation")
        return path
    path = Path(name)
    if path.exists():
        return path
    raise ValueError(
        f"{name}: no such file, and not a dataset that flowjax ships "
        f"(known names: {', '.join(sorted(DATASETS))})"
    )
