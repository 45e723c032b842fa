"""Device facts of the machines the GPU targets are tested on (none of them is this one)."""

from __future__ import annotations

import tensorrt_rtx_bindings as trt

from vla_edge.targets.gpu.facts import DeviceFacts, Gpu

TRT_RTX = trt.__version__
CUDA_NATIVE = "ggml cpu: AVX2 | CUDA backend built"


def gb10(**over) -> DeviceFacts:
    base = dict(gpus=(Gpu(0, "NVIDIA GB10", (12, 1)),), native_cuda=True, native_info=CUDA_NATIVE,
                tensorrt={"tensorrt_rtx_bindings": TRT_RTX, "tensorrt": None})
    return DeviceFacts(**{**base, **over})


def h200(**over) -> DeviceFacts:
    base = dict(gpus=(Gpu(0, "NVIDIA H200", (9, 0)),), native_cuda=True, native_info=CUDA_NATIVE,
                tensorrt={"tensorrt_rtx_bindings": TRT_RTX, "tensorrt": None})
    return DeviceFacts(**{**base, **over})


def orin(**over) -> DeviceFacts:
    base = dict(gpus=(Gpu(0, "NVIDIA Jetson AGX Orin integrated GPU", (8, 7)),), native_cuda=True,
                native_info=CUDA_NATIVE, tegra_release="# R36 (release), REVISION: 4.0",
                jetson_model="NVIDIA Jetson AGX Orin", power_mode="MAXN (id 0)",
                tensorrt={"tensorrt_rtx_bindings": TRT_RTX, "tensorrt": "10.3.0"})
    return DeviceFacts(**{**base, **over})


def cpu_only(**over) -> DeviceFacts:
    return DeviceFacts(**{**dict(gpu_error="NVML Shared Library Not Found", native_info="ggml cpu: AVX2"), **over})
