"""Per-face speed of a restorer network (512 px faces; CFGPFSSR: 64 px in, 1024 px out).

    python benchmarks/restorer_speed.py [--network gfpgan-v1.4|compact|mmrb|mmrb-no-mmrb|cfgpfssr|cfgpfssr-sr]
        [--device cpu|cuda]
        [--repeats N] [--batches 1,4] [--backends eager,compile,onnx] [--dtypes fp32,bf16]

GFP-GAN v1.4 and MMRB (the paper's full configuration; ``mmrb-no-mmrb`` with plain
residual blocks instead) and CFGPFSSR (the paper's 64 → 1024 network with PSFR-GAN's
512 px parser in front, as restoring runs it; ``cfgpfssr-sr`` without the parser) run
with random weights (speed doesn't depend on their values, and no such file can be had
here); ``compact`` runs the weights shipped in weights/.
Reports seconds per face, FLOPs per face (counted by PyTorch's FlopCounterMode) and
achieved GFLOP/s for each backend × precision × batch size.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from facefix.onnx import create_session, export_restorer
from facefix.restorers import TorchRestorer

NETWORKS = ("gfpgan-v1.4", "compact", "mmrb", "mmrb-no-mmrb", "cfgpfssr", "cfgpfssr-sr")


def sizes(name: str) -> tuple[int, int]:
    """(input, output) pixels of a face."""
    return (64, 1024) if name.startswith("cfgpfssr") else (512, 512)


def build_network(name: str) -> torch.nn.Module:
    if name == "compact":
        from facefix.networks import load_network
        from facefix.weights import bundled_dir, get_entry
        from facefix_plugins.compact import CARD

        return load_network(CARD, bundled_dir() / get_entry("compact-v1").filename).module
    from facefix.restorers import ImageOnly

    if name.startswith("cfgpfssr"):
        from facefix_plugins.cfgpfssr.arch import FULL_CONFIG as SR_CONFIG, CFGPFSSRNet
        from facefix_plugins.cfgpfssr.network import ParseAndSuperResolve
        from facefix_plugins.psfrgan.arch import official_parser

        network = CFGPFSSRNet(**SR_CONFIG)
        if name == "cfgpfssr-sr":
            return _WithParsing(network)
        return ParseAndSuperResolve(official_parser(), network)
    if name.startswith("mmrb"):
        from facefix_plugins.mmrb.arch import FULL_CONFIG, MMRBNet

        return ImageOnly(MMRBNet(**dict(FULL_CONFIG, mmrb=name == "mmrb")))
    from facefix_plugins.gfpgan.arch import official_gfpgan

    return ImageOnly(official_gfpgan("clean"))


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = Path("/proc/cpuinfo").read_text()
    extras = [flag for flag in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if flag in flags]
    return (f"{cpu} ({', '.join(extras)}), {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}")


def time_call(function, repeats: int) -> float:
    function()  # warm-up: allocations, kernel selection
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


class _WithParsing(torch.nn.Module):
    """The super-resolver alone, fed a fixed one-hot map at the parser's 512 px."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.register_buffer("parsing", torch.zeros(1, 19, 512, 512))
        self.parsing[:, 1] = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, self.parsing.expand(x.shape[0], -1, -1, -1))


def flops_per_face(module: torch.nn.Module, device: str, size: int = 512) -> float:
    x = torch.zeros(1, 3, size, size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", choices=NETWORKS, default="gfpgan-v1.4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--backends", default="eager,compile,onnx")
    parser.add_argument("--dtypes", default="fp32,bf16")
    args = parser.parse_args()
    device = args.device
    batches = [int(b) for b in args.batches.split(",")]
    backends = args.backends.split(",")
    dtypes = args.dtypes.split(",")
    if device == "cpu" and "bf16" in dtypes and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        dtypes.remove("bf16")

    torch.manual_seed(0)
    module = build_network(args.network).eval().to(device)
    in_size, out_size = sizes(args.network)
    flops = flops_per_face(module, device, in_size)
    print(f"machine: {machine(device)}")
    print(f"{args.network}, {in_size} → {out_size} px: {flops / 1e9:.1f} GFLOP per face, "
          f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M parameters "
          f"(multiply-adds counted as 2 FLOPs)\n")
    print(f"{'backend':<10} {'dtype':<6} {'batch':>5} {'s/face':>8} {'GFLOP/s':>8} {'vs eager fp32':>14}")
    results: dict[tuple[str, str, int], float] = {}

    def report(backend: str, dtype: str, batch: int, seconds: float) -> None:
        per_face = seconds / batch
        results[(backend, dtype, batch)] = per_face
        eager = results.get(("eager", "fp32", batch))
        ratio = f"{per_face / eager:.2f}x" if eager else "-"
        print(f"{backend:<10} {dtype:<6} {batch:>5} {per_face:8.3f} {flops / per_face / 1e9:8.1f} {ratio:>14}", flush=True)

    for batch in batches:
        x = torch.rand(batch, 3, in_size, in_size, device=device) * 2 - 1
        for dtype in dtypes:
            autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]

            def run(model=module):
                with torch.inference_mode():
                    if autocast_dtype is None:
                        return model(x)
                    with torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype):
                        return model(x)

            if "eager" in backends:
                report("eager", dtype, batch, time_call(run, args.repeats))
            if "compile" in backends:
                compiled = torch.compile(module)
                start = time.perf_counter()
                run(compiled)
                compile_seconds = time.perf_counter() - start
                report("compile", dtype, batch, time_call(lambda: run(compiled), args.repeats))
                print(f"{'':<10} (first call with compilation: {compile_seconds:.0f} s)")
        if "onnx" in backends:
            with tempfile.TemporaryDirectory() as folder:
                restorer = TorchRestorer(module.cpu(), input_size=in_size, output_size=out_size, name=args.network)
                path = export_restorer(restorer, Path(folder) / "network.onnx", dynamic_batch=True).path
                module.to(device)
                session, provider = create_session(path, device)
                feed = {session.get_inputs()[0].name: x.cpu().numpy().astype(np.float32)}
                report("onnx", "fp32", batch, time_call(lambda: session.run(None, feed), args.repeats))
                print(f"{'':<10} (onnxruntime provider: {provider})")
                del session


if __name__ == "__main__":
    main()
