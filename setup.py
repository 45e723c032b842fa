"""Install vla-edge: the top-level folders become one `vla_edge` package.

The design keeps each concern in its own top-level folder (sdk/, targets/, robots/,
calibration/) while users import a single package, so the folders are mapped here.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

# Top-level folder -> dotted package it installs as.
PACKAGE_ROOTS = {
    "vla_edge": "sdk",
    "vla_edge.targets": "targets",
    "vla_edge.robots": "robots",
    "vla_edge.calibration": "calibration",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for package, folder in PACKAGE_ROOTS.items():
        package_dir[package] = folder
        packages.append(package)
        for sub in find_packages(where=folder):
            packages.append(f"{package}.{sub}")
            package_dir[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return packages, package_dir


def _native_build() -> dict:
    """The native core is optional at install time; see native/build_support.py."""
    helper = ROOT / "native" / "build_support.py"
    if not helper.exists():
        return {}
    namespace: dict = {}
    exec(compile(helper.read_text(), str(helper), "exec"), namespace)
    return namespace["setup_kwargs"](ROOT)


packages, package_dir = _packages()

setup(
    name="vla-edge",
    version="0.1.0",
    description="Edge deployment SDK for quantized vision-language-action robot policies",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=packages,
    package_dir=package_dir,
    package_data={
        "vla_edge": ["py.typed", "**/*.yaml", "**/*.json", "**/*.txt"],
        "vla_edge.robots": ["**/*.yaml", "**/*.xml"],
        "vla_edge.targets": ["**/*.yaml"],
    },
    include_package_data=True,
    install_requires=[
        "numpy==2.4.6",
        "pyyaml==6.0.3",
        "pydantic==2.13.4",
        "typer==0.29.1",
        "rich==15.0.0",
        "gguf==0.19.0",  # GGUF read/write for pack weights
        "sentencepiece==0.2.3",  # pi0.5 tokenizer (tokenizer.model)
        "pillow==13.0.0",  # image decode + the bilinear resize openpi uses
        "platformdirs==4.14.8",  # user cache dir for the demo pack
        "psutil==7.2.2",  # health monitors, peak RSS in bench
        "nvidia-ml-py==13.615.71",  # NVML health monitor (optional at run time)
        "mujoco==4.0.0",  # ur3-sim / arx5-sim robots
        # UR3 driver; ur-rtde 1.6.5 has no CPython 3.13 wheel (and no sdist), so on 3.13 the UR3
        # driver says so on connect and its tests skip; everything else installs and runs
        "ur-rtde==1.6.5; python_version < '3.13'",
        "python-can==4.6.1",  # ARX R5 CAN driver
        "websockets==17.4",  # `vla-edge serve` (openpi's websocket policy protocol)
        "msgpack==1.2.4",  # `vla-edge serve` messages: data only, never code (unlike pickle)
        "matplotlib==3.11.2",  # `vla-edge report` plots, embedded in report.html
        "imageio-ffmpeg==0.8.1",  # `vla-edge report` simulator videos as MP4 (bundles an ffmpeg binary)
    ],
    extras_require={
        "test": [
            "pytest==9.0.3",
            "hypothesis==6.155.2",
            # Independent oracle for the reference forward (SigLIP + Gemma modules).
            "torch==2.13.0",
            "safetensors==0.8.0",  # checkpoint / torchao importer tests write safetensors files
            # torchao importer tests write their files with torchao's own quantiser and serialiser
            "torchao==0.18.0",
            "transformers==5.23.0",
            "onnx==1.23.2",  # `onnx` target tests (graphs checked with onnxruntime)
            "onnxruntime==1.32.0",
            "pyarrow==26.0.1",  # calibrate --from a LeRobot dataset (parquet), tests write such datasets
            "rerun-sdk==0.41.0",  # `run --view` tests write a rerun recording and read it back
            "cryptography==48.0.0",  # serve tests make a self-signed certificate for the wss:// round trip
            # `eval --ray` and the Ray Serve deployment are tested on a local Ray instance
            "ray[serve]==2.60.0",
            # real gb10 engine builds in CI (TensorRT-RTX's builder runs without a GPU; ~90 MB)
            "tensorrt-rtx-cu12-bindings==1.7.1.116",
            "tensorrt-rtx-cu12-libs==1.7.1.116",
        ],
        "cameras": ["opencv-python-headless==5.0.0.93"],
        # `vla-edge eval --ray` (episodes on a Ray cluster) and `vla-edge serve --ray-serve` / the
        # `vla_edge.serve.ray_serve` deployment (replicas over a cluster's GPUs): Ray schedules, not us
        "ray": ["ray[serve]==2.60.0"],
        # `calibrate --from` a LeRobot dataset: its frames are parquet files (~40 MB wheel, so not
        # in the default install); its videos are decoded with imageio-ffmpeg's ffmpeg (default install)
        "lerobot": ["pyarrow==26.0.1"],
        # `vla-edge run --view`: the live view streams to rerun (lerobot's viewer); ~170 MB wheel
        "view": ["rerun-sdk==0.41.0"],
        "report": [],  # kept so `pip install 'vla-edge[report]'` still works: plots are in the default install now
        "onnx": ["onnx==1.23.2", "onnxruntime==1.32.0"],  # `onnx` target and `pack export-onnx`
        # `pack import --from checkpoint|torchao-int8wo|omega-qvla`: reads safetensors / torch files
        # (bf16 included; torch.load(weights_only=True) for .pt)
        "import": ["torch==2.13.0", "safetensors==0.8.0"],
        # `pack build-engine --target gb10`: TensorRT-RTX's builder and ONNX parser (no GPU needed)
        "trt": ["tensorrt-rtx-cu12-bindings==1.7.1.116", "tensorrt-rtx-cu12-libs==1.7.1.116",
                "onnx==1.23.2", "onnxruntime==1.32.0"],
        # running gb10 engines on the GB10: the builder's libraries plus CUDA device memory from Python
        "gb10": ["tensorrt-rtx-cu12-bindings==1.7.1.116", "tensorrt-rtx-cu12-libs==1.7.1.116",
                 "cuda-python==13.4.4"],
    },
    entry_points={"console_scripts": ["vla-edge=vla_edge.cli.main:main"]},
    **_native_build(),
)
