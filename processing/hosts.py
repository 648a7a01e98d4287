"""Which processing host this is, and its share of the selection.

SageMaker describes the cluster in /opt/ml/config/resourceconfig.json (`current_host`,
`hosts`); SM_RESOURCE_CONFIG_PATH points elsewhere (tests, the local runner). Each id goes
to host `stable_hash(id) mod N`, so the shares are disjoint, cover everything exactly once,
and do not depend on the order or size of the selection.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RESOURCE_CONFIG = "/opt/ml/config/resourceconfig.json"


@dataclass(frozen=True)
class HostShare:
    name: str
    index: int
    count: int

    def owns(self, image_id: str) -> bool:
        digest = hashlib.blake2b(image_id.encode(), digest_size=8, person=b"bincount-host").digest()
        return int.from_bytes(digest, "big") % self.count == self.index


def current_host() -> HostShare:
    """This host's share; a single host (`algo-1`) when there is no resource config."""
    path = Path(os.environ.get("SM_RESOURCE_CONFIG_PATH", DEFAULT_RESOURCE_CONFIG))
    if not path.is_file():
        return HostShare("algo-1", 0, 1)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        hosts = sorted(config["hosts"])
        name = config["current_host"]
        return HostShare(name, hosts.index(name), len(hosts))
    except (ValueError, KeyError, TypeError) as err:
        raise SystemExit(
            f"prepare: {path} is not a valid resource config "
            f"(needs current_host and hosts containing it): {err}"
        ) from err
