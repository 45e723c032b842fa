"""Run LeRobot's own pi0.5 (`PI05Pytorch`) on random weights and record every stage.

This file runs under LeRobot's interpreter (Python >= 3.12, `lerobot[pi]==0.6.1`), never under
vla-edge's: it imports nothing from vla_edge, so what it records is computed by code nobody here
wrote. It writes

  OUT/ckpt/            the policy as LeRobot saves it (`save_pretrained`: config.json +
                       model.safetensors), the checkpoint layout users bring to `pack import`
  OUT/stages.npz       inputs (present images in [-1, 1], unpadded tokens, noise) and, per
                       observation: vision tokens per image, prefix K/V per layer (padding dropped),
                       time conditioning, x_t and velocity of every flow step, the final chunk

Inputs are fed the way LeRobot's pipeline hands them to the model: tokens right-padded to
`tokenizer_max_length` with a mask, and an empty camera slot (all -1 pixels, mask False) beside the
real cameras - so the recording also shows that dropping padding and absent cameras (what vla-edge
does) is the same computation as masking them (what LeRobot and openpi do).

Weights: LeRobot's initialisation, then every parameter perturbed by N(0, sigma) so that no norm
weight, AdaRMS modulation (zero-initialised) or bias is trivially zero. A reduced depth keeps every
width real (2048 / 1024 / 1152, 8 heads x 256, MQA, 257152 vocabulary) while making the run cheap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.pi05 import modeling_pi05
from lerobot.policies.pi05.configuration_pi05 import PI05Config
from lerobot.policies.pi05.modeling_pi05 import PI05Policy

CAMERAS = ("base_0_rgb", "left_wrist_0_rgb")  # present; a third, empty slot is appended masked
PAD_ID, BOS_ID = 0, 2


def _reduced_depths(llm: int | None, expert: int | None) -> None:
    """Make LeRobot build Gemma stacks of the given depth (widths untouched)."""
    original = modeling_pi05.get_gemma_config

    def patched(variant: str):
        cfg = original(variant)
        depth = llm if variant == "gemma_2b" else expert
        if depth is not None:
            cfg.depth = depth
        return cfg

    modeling_pi05.get_gemma_config = patched


def build_policy(args: argparse.Namespace) -> PI05Policy:
    _reduced_depths(args.llm_layers, args.expert_layers)
    features = {f"observation.images.{name}": PolicyFeature(FeatureType.VISUAL, (3, 224, 224)) for name in CAMERAS}
    features["observation.state"] = PolicyFeature(FeatureType.STATE, (args.state_dim,))
    config = PI05Config(dtype="float32", device="cpu", input_features=features,
                        output_features={"action": PolicyFeature(FeatureType.ACTION, (args.action_dim,))},
                        empty_cameras=1)
    policy = PI05Policy(config).eval()
    vision = policy.model.paligemma_with_expert.paligemma.model.vision_tower.vision_model
    if args.vision_layers is not None:
        vision.encoder.layers = vision.encoder.layers[: args.vision_layers]
        vision.config.num_hidden_layers = args.vision_layers
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * args.sigma)
    return policy


def save_checkpoint(policy: PI05Policy, out: Path, args: argparse.Namespace) -> None:
    policy.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    # a model with fewer layers than its variant says is a pruned export: state the kept depth
    if args.llm_layers is not None:
        config["paligemma_depth"] = args.llm_layers
    if args.expert_layers is not None:
        config["action_expert_depth"] = args.expert_layers
    (out / "config.json").write_text(json.dumps(config, indent=2))


def record(policy: PI05Policy, rng: np.random.Generator, args: argparse.Namespace) -> dict[str, np.ndarray]:
    model = policy.model
    cfg = policy.config
    pixels = rng.integers(0, 256, size=(len(CAMERAS), 224, 224, 3), dtype=np.uint8)
    images = (pixels.astype(np.float32) / 255.0) * 2.0 - 1.0  # what both pipelines feed the model
    n_tok = int(rng.integers(40, 90))
    tokens = np.concatenate([[BOS_ID], rng.integers(3, 257152, size=n_tok - 1)]).astype(np.int64)
    noise = rng.standard_normal((cfg.chunk_size, cfg.max_action_dim)).astype(np.float32)

    padded = np.full((1, cfg.tokenizer_max_length), PAD_ID, np.int64)
    padded[0, :n_tok] = tokens
    mask = np.zeros((1, cfg.tokenizer_max_length), bool)
    mask[0, :n_tok] = True
    torch_images = [torch.from_numpy(img.transpose(2, 0, 1).copy())[None] for img in images]
    torch_images.append(torch.full_like(torch_images[0], -1.0))  # the empty camera slot
    img_masks = [torch.ones(1, dtype=torch.bool)] * len(CAMERAS) + [torch.zeros(1, dtype=torch.bool)]

    stages: dict[str, list[np.ndarray]] = {"time_cond": [], "x_t": [], "velocity": [], "time": []}
    embed_suffix, denoise_step = model.embed_suffix, model.denoise_step

    def recording_embed_suffix(noisy_actions, timestep):
        out = embed_suffix(noisy_actions, timestep)
        stages["time_cond"].append(out[3][0].numpy().copy())
        return out

    def recording_denoise_step(**kwargs):
        v = denoise_step(**kwargs)
        stages["x_t"].append(kwargs["x_t"][0].numpy().copy())
        stages["time"].append(np.float32(kwargs["timestep"][0]))
        stages["velocity"].append(v[0].numpy().copy())
        return v

    model.embed_suffix, model.denoise_step = recording_embed_suffix, recording_denoise_step
    with torch.no_grad():
        vision = [model.paligemma_with_expert.embed_image(img)[0].numpy() for img in torch_images[: len(CAMERAS)]]
        # the prefix cache exactly as sample_actions builds it (same masks and positions)
        embs, pad_masks, att_masks = model.embed_prefix(torch_images, img_masks, torch.from_numpy(padded),
                                                        torch.from_numpy(mask))
        att_4d = modeling_pi05.prepare_attention_masks_4d(modeling_pi05.make_att_2d_masks(pad_masks, att_masks))
        _, cache = model.paligemma_with_expert.forward(
            attention_mask=att_4d, position_ids=torch.cumsum(pad_masks, dim=1) - 1, past_key_values=None,
            inputs_embeds=[embs, None], use_cache=True)
        keep = pad_masks[0].numpy()
        keys = np.stack([layer.keys[0].permute(1, 0, 2).numpy()[keep] for layer in cache.layers])
        values = np.stack([layer.values[0].permute(1, 0, 2).numpy()[keep] for layer in cache.layers])
        actions = model.sample_actions(torch_images, img_masks, torch.from_numpy(padded), torch.from_numpy(mask),
                                       noise=torch.from_numpy(noise)[None], num_steps=args.steps)[0].numpy()
    model.embed_suffix, model.denoise_step = embed_suffix, denoise_step
    return {"images": images, "tokens": tokens.astype(np.int32), "noise": noise, "vision": np.stack(vision),
            "keys": keys, "values": values, "actions": actions,
            **{name: np.stack(values_) for name, values_ in stages.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--obs", type=int, default=2, help="observations to record")
    parser.add_argument("--sigma", type=float, default=0.02, help="std of the perturbation added to every weight")
    parser.add_argument("--vision-layers", type=int, default=None, help="default: all 27")
    parser.add_argument("--llm-layers", type=int, default=None, help="default: all 18")
    parser.add_argument("--expert-layers", type=int, default=None, help="default: all 18")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--state-dim", type=int, default=8)
    parser.add_argument("--action-dim", type=int, default=7)
    args = parser.parse_args()

    policy = build_policy(args)
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(policy, args.out / "ckpt", args)
    rng = np.random.default_rng(args.seed + 1)
    runs = [record(policy, rng, args) for _ in range(args.obs)]
    arrays = {f"obs{i}_{name}": value for i, run in enumerate(runs) for name, value in run.items()}
    np.savez(args.out / "stages.npz", num_obs=np.int32(args.obs), num_steps=np.int32(args.steps), **arrays)
    print(f"wrote {args.out / 'ckpt'} and {args.out / 'stages.npz'}")


if __name__ == "__main__":
    main()
