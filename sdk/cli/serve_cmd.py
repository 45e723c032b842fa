"""`vla-edge serve`: predictions over a websocket for robot software that drives the arm itself."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def serve(
    pack: Annotated[str, typer.Option(help="Pack directory, or 'demo'")] = "demo",
    target: Annotated[str, typer.Option(help="Execution target, or auto: the fastest that can run the pack here")] = "auto",
    host: Annotated[str, typer.Option(
        help="Address to listen on; 127.0.0.1 = this machine only. Another address needs an API key")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (openpi's default is 8000; 0 picks a free one)")] = 8000,
    image: Annotated[Optional[list[str]], typer.Option(
        help="Flat requests: robot camera CAMERA is in request key KEY, as CAMERA=KEY (repeatable)")] = None,
    state_key: Annotated[str, typer.Option(help="Flat requests: key of the state vector")] = "observation/state",
    prompt_key: Annotated[str, typer.Option(help="Flat requests: key of the instruction")] = "prompt",
    prompt: Annotated[Optional[str], typer.Option(help="Instruction when a request has none (default: pack's)")] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Noise seed of every connection's generator; a reset/episode_start restarts its sequence")] = None,
    api_key_file: Annotated[Optional[Path], typer.Option(
        help="File holding the API key clients must send (openpi: api_key=); else $VLA_EDGE_API_KEY")] = None,
    api_key: Annotated[Optional[str], typer.Option(
        help="The API key itself (visible to every user in the process list: prefer --api-key-file)")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option(help="PEM certificate chain: serve wss:// (needs --tls-key)")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="PEM private key of --tls-cert")] = None,
    max_message_mb: Annotated[float, typer.Option(help="Largest request a client may send, MiB")] = 64.0,
    max_in_flight: Annotated[int, typer.Option(
        help="Requests one connection may have unanswered; past it the server stops reading it")] = 2,
    idle_timeout: Annotated[float, typer.Option(
        help="Close a connection with nothing sent or owed for this many seconds (0: never)")] = 0.0,
    max_connections: Annotated[int, typer.Option(help="Open connections; more are refused (HTTP 503)")] = 16,
    max_batch: Annotated[int, typer.Option(
        help="Requests (from different connections) per forward pass; >1 needs a target that batches")] = 1,
    batch_wait_ms: Annotated[float, typer.Option(help="Longest wait for a batch to fill")] = 2.0,
    ray_serve: Annotated[bool, typer.Option(
        "--ray-serve", help="Serve through Ray Serve (extra 'ray'): replicas over a cluster's GPUs, same protocol")] = False,
    ray_address: Annotated[str, typer.Option(
        help="--ray-serve: 'local' (a cluster started here, else a new instance), 'auto', HOST:PORT, ray://HOST:10001")] = "local",
    ray_replicas: Annotated[int, typer.Option(help="--ray-serve: replicas, each its own Policy")] = 1,
    ray_gpus: Annotated[float, typer.Option(help="--ray-serve: GPUs per replica (1 for a GPU target; 0.5 shares one)")] = 0.0,
) -> None:
    """Serve a policy over a websocket (openpi protocol): observations in, action chunks out. No safety filter."""
    from ..packs.demo import resolve_pack
    from ..policy import load_policy
    from ..serve import Batching, ConnectionLimits, KeyMap, PolicyServer, load_api_key, tls_context
    from ..serve.access import key_file_warning
    from ..serve.server import SAFETY_NOTE

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # Everything about access and limits is checked before the (slow) pack load.
    keys = KeyMap.parse(image or [], state_key, prompt_key)
    key = load_api_key(api_key_file, api_key)
    if api_key is not None:
        _err.print("[yellow]warning: --api-key puts the key in the process list (ps, /proc), visible to every "
                   "user of this machine; use --api-key-file or $VLA_EDGE_API_KEY[/yellow]")
    if api_key_file is not None and (warning := key_file_warning(api_key_file)):
        _err.print(f"[yellow]warning: {warning}[/yellow]")
    tls = tls_context(tls_cert, tls_key)
    limits = ConnectionLimits(max_message_bytes=int(max_message_mb * 2**20), max_in_flight=max_in_flight,
                              idle_timeout_s=None if idle_timeout == 0 else idle_timeout,
                              max_connections=max_connections)
    batching = Batching(max_batch, batch_wait_ms)
    if ray_serve:
        _serve_on_ray(pack, target, seed, keys, prompt, key, host, port, tls_cert, tls_key, ray_address, ray_replicas,
                      ray_gpus, max_batch)
        return

    policy = load_policy(resolve_pack(pack), target=target, seed=seed)
    try:
        server = PolicyServer(policy, keys, default_prompt=prompt, host=host, port=port, api_key=key, tls=tls,
                              limits=limits, batching=batching)
        bound = server.start()
        info = policy.info
        scheme, http = ("wss", "https") if tls else ("ws", "http")
        _err.print(f"serving pack '{info.pack_name}' ({info.quant_recipe}) on target {info.target} at {scheme}://{host}:{bound} "
                   f"(health: {http}://{host}:{bound}/healthz); cameras {sorted(set(info.cameras.values()))}, "
                   f"state {len(info.state_names)}, chunk {info.horizon} x {len(info.action_names)}")
        _err.print(f"target {info.target}: {policy.target_reason}")
        _err.print(f"[yellow]{SAFETY_NOTE}[/yellow]")
        try:
            server.wait()
        except KeyboardInterrupt:
            _err.print(f"stopped after {server.served} chunk(s)")
    finally:
        policy.close()


def _serve_on_ray(pack: str, target: str, seed: int | None, keys, prompt: str | None, key, host: str, port: int,
                  tls_cert: Path | None, tls_key: Path | None, address: str, replicas: int, gpus: float,
                  max_batch: int) -> None:
    """Ray Serve runs the replicas and the HTTP/websocket proxy; the per-connection limits and the
    fair scheduler of `vla-edge serve` are not in this path (Ray Serve's routing and queues are)."""
    from ..errors import ConfigError
    from ..packs.demo import resolve_pack
    from ..serve.access import exposure_warnings
    from ..serve.server import SAFETY_NOTE

    if max_batch > 1:
        raise ConfigError("--max-batch", "batching is not available with --ray-serve (its replicas run one request "
                                         "per pass; use vla-edge serve --max-batch on x86 or cuda)")
    from ..serve import ray_serve as rs  # the extra's import error names it

    if port == 0:  # Ray Serve's proxy needs a real port to be told; pick a free one now
        import socket

        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    # absolute: replicas run in other working directories (and, on a cluster, need the pack at this path)
    config = rs.ReplicaConfig(pack=str(resolve_pack(pack).resolve()), target=target, seed=seed, keys=keys, default_prompt=prompt,
                              api_key=key)
    for warning in exposure_warnings(host, port, key is not None, tls_cert is not None):
        _err.print(f"[yellow]warning: {warning}[/yellow]")
    scheme, http = ("wss", "https") if tls_cert else ("ws", "http")

    def ready() -> None:
        _err.print(f"serving pack {config.pack} on target {target} through Ray Serve ({replicas} replica(s), "
                   f"{gpus:g} GPU(s) each) at {scheme}://{host}:{port}/ (openpi websocket), "
                   f"{http}://{host}:{port}/infer (POST msgpack), {http}://{host}:{port}/healthz")
        _err.print(f"[yellow]{SAFETY_NOTE}[/yellow]")

    try:
        rs.serve_until_interrupted(config, host=host, port=port, address=address, replicas=replicas,
                                   gpus_per_replica=gpus, tls_cert=tls_cert, tls_key=tls_key, on_ready=ready)
    except KeyboardInterrupt:
        _err.print("stopped")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
