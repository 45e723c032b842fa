"""Runs inside the openpi-client 0.1.2 environment (numpy < 2; no vla_edge here): talk to a
`vla-edge serve` exactly as openpi's own robot code does, and print what happened as JSON.

usage: python openpi_client_probe.py URI API_KEY [--expect-refused]
"""

import json
import sys

import numpy as np
from openpi_client import websocket_client_policy


def main() -> None:
    uri, api_key = sys.argv[1], sys.argv[2]
    if "--expect-refused" in sys.argv:
        try:
            websocket_client_policy.WebsocketClientPolicy(host=uri, api_key=api_key)
        except Exception as exc:  # websockets' InvalidStatus carries the HTTP response
            response = getattr(exc, "response", None)
            print(json.dumps({"refused": type(exc).__name__, "status": getattr(response, "status_code", None)}))
            return
        print(json.dumps({"refused": None}))
        return
    policy = websocket_client_policy.WebsocketClientPolicy(host=uri, api_key=api_key)
    meta = policy.get_server_metadata()
    rng = np.random.default_rng(0)
    flat = meta["flat_keys"]
    obs = {key: rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for key in flat["images"].values()}
    obs[flat["state"]] = rng.standard_normal(len(meta["state_names"]))
    obs[flat["prompt"]] = "pick up the block"
    obs["noise"] = rng.standard_normal(meta["noise_shape"]).astype(np.float32)
    reply = policy.infer(obs)
    try:
        policy.infer({flat["prompt"]: "no state"})
        error = None
    except RuntimeError as exc:  # openpi's client raises a text reply as RuntimeError
        error = str(exc)
    print(json.dumps({"numpy": np.__version__, "pack": meta["pack"], "actions": reply["actions"].tolist(),
                      "dtype": str(reply["actions"].dtype), "noise": obs["noise"].tolist(),
                      "names": reply["names"], "error": error}))


if __name__ == "__main__":
    main()
