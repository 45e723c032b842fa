"""Query `vla-edge serve` with openpi's own client, unchanged, the way a LIBERO-style robot loop
does. Start the server first (the demo pack's cameras are `base` and `wrist`):

    vla-edge serve --pack demo --port 8000 \
        --image base=observation/image --image wrist=observation/wrist_image

A server started with a key ($VLA_EDGE_API_KEY or --api-key-file) needs the same key here: this
script passes $VLA_EDGE_API_KEY as openpi's `api_key=` (sent as `Authorization: Api-Key <key>`).
For a TLS server give the host as wss://HOST (a private certificate: set SSL_CERT_FILE to it).

The client package pins numpy<2 in its metadata but runs with numpy 2; install it without
dependencies next to vla-edge: pip install --no-deps openpi-client==0.1.2 dm-tree==0.1.10
(checked by hand with those versions; CI cannot install them alongside numpy 2).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from openpi_client import action_chunk_broker, websocket_client_policy


def main(host: str = "127.0.0.1", port: int = 8000) -> None:
    client = websocket_client_policy.WebsocketClientPolicy(host=host, port=port,
                                                           api_key=os.environ.get("VLA_EDGE_API_KEY"))
    meta = client.get_server_metadata()
    print(f"server: pack {meta['pack']} on {meta['target']}, chunk {meta['horizon']} x {len(meta['action_names'])}")
    print(f"note: {meta['safety']}")
    rng = np.random.default_rng(0)
    obs = {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": np.zeros(len(meta["state_names"]), dtype=np.float32),
        "prompt": "pick up the red block",
    }
    result = client.infer(obs)
    print("chunk", result["actions"].shape, "server infer ms", round(result["server_timing"]["infer_ms"], 1))
    # openpi's broker hands out one row per step and asks for a new chunk every `action_horizon` steps
    broker = action_chunk_broker.ActionChunkBroker(client, action_horizon=5)
    for step in range(3):
        print("step", step, np.round(broker.infer(obs)["actions"], 3))


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["127.0.0.1"]), *(int(a) for a in sys.argv[2:3]))
