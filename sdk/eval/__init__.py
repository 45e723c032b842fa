"""`vla-edge eval`: closed-loop task success in simulation, several packs on the same seeds.

One idea per module: `conventions` (openpi's LIBERO facts), `observation` (simulator observation
-> the `Observation` a Policy takes), `sim_env` / `sim_setup` / `sim_worker` (the simulator in its
own Python environment), `policies` (packs and openpi websocket servers behind one interface),
`plan` (which episodes, which seeds), `episode` (one closed-loop episode), `records` (resumable
JSONL), `stats` (Wilson and paired intervals), `summary` (tables), `video`, `runner` (workers,
progress).
"""
