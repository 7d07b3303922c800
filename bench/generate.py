"""Synthetic but realistic flows: nested step configs of ~5 KB, unicode names, a few ~1 MB flows."""

from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = ["orders", "billing", "customer sync", "Überweisung", "注文処理", "données-clients", "inventory/eu", "ALERTS"]
TYPES = ["http-in", "transform", "filter", "kafka-out", "sql", "switch", "join", "schedule"]


def make_flow(i: int, rnd: random.Random, big: bool = False) -> dict:
    steps = []
    n_steps = 1800 if big else rnd.randint(8, 14)
    for j in range(n_steps):
        steps.append({
            "id": f"s{j:04d}",
            "type": rnd.choice(TYPES),
            "name": f"step {j} of flow {i}",
            "x": rnd.randint(0, 1600), "y": rnd.randint(0, 900),
            "config": {
                "endpoint": f"https://svc-{rnd.randint(1, 40)}.example.com/api/v{rnd.randint(1, 3)}/{i}/{j}",
                "retries": rnd.randint(0, 5), "timeoutMs": rnd.choice([500, 1000, 5000]),
                "mapping": {f"field_{k}": f"$.payload.items[{k}].value" for k in range(rnd.randint(2, 6))},
                "expr": "payload.total * 1.2 + " + str(rnd.random()),
            },
            "wires": [[f"s{j + 1:04d}"]] if j + 1 < n_steps else [],
        })
    base = NAMES[i % len(NAMES)]
    return {
        "name": f"{base} {i:06d}",
        "version": f"{1 + i % 3}.{i % 7}",
        "exportedAt": "2026-11-23T10:00:00Z",
        "description": "synthetic flow for benchmarks; " + "lorem ipsum " * rnd.randint(5, 20),
        "steps": steps,
    }


def write_flows(folder: Path, n: int, seed: int = 7, big_every: int = 2500) -> int:
    """Write n flows as *.json files; every big_every-th flow is ~1 MB. Returns total bytes."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        data = json.dumps(make_flow(i, rnd, big=(i % big_every == big_every - 1)), ensure_ascii=False).encode()
        (folder / f"flow-{i:06d}.json").write_bytes(data)
        total += len(data)
    return total


def change_flows(folder: Path, fraction: float, seed: int = 11, tag: str = "changed") -> list[Path]:
    """Edit a fraction of the flows in place (one field each); returns the edited files."""
    files = sorted(folder.glob("*.json"))
    rnd = random.Random(seed)
    chosen = rnd.sample(files, max(1, int(len(files) * fraction)))
    for path in chosen:
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["steps"][0]["config"]["retries"] = doc["steps"][0]["config"]["retries"] + 1
        doc["bench"] = tag
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    return chosen
