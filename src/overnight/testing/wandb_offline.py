"""What W&B received, read back from its offline run files (tests of `--log-to wandb`).

An offline run is written to `<WANDB_DIR>/wandb/offline-run-*/run-*.wandb`: a 7-byte header
(":W&B", magic, version), then LevelDB-log framing (32 KiB blocks, each record chunk behind a
7-byte header: crc32, length, type full/first/middle/last) around W&B's protobuf `Record`s.
Read with W&B's own protobuf classes; nothing is sent anywhere.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> list[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file")
    pos, out, pending = 7, [], b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def read_run(path: Path) -> dict:
    from wandb.proto import wandb_internal_pb2 as pb

    run = {"config": {}, "history": [], "summary": {}, "artifacts": []}
    for raw in _chunks(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run |= {"name": r.display_name, "group": r.run_group, "job_type": r.job_type, "project": r.project}
            run["config"] |= {_key(u): json.loads(u.value_json) for u in r.config.update if _key(u) != "_wandb"}
        elif kind == "config":
            run["config"] |= {_key(u): json.loads(u.value_json) for u in record.config.update if _key(u) != "_wandb"}
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            run["history"].append({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "summary":
            run["summary"] |= {_key(u): json.loads(u.value_json) for u in record.summary.update}
        elif kind == "artifact":
            run["artifacts"].append((record.artifact.type, record.artifact.name))
    return run


def read_offline_runs(wandb_dir: Path) -> list[dict]:
    """Every offline run under WANDB_DIR, oldest first."""
    files = sorted(Path(wandb_dir).glob("wandb/offline-run-*/run-*.wandb"))
    return [read_run(f) for f in files]
