"""Throughput and model FLOPs utilisation (MFU): the FLOPs a training token costs, the peak
FLOP/s of the device (data sheet, CPU clock × width, or a measured matmul) and the figures of
each logging window of the loop."""

import time
from pathlib import Path

import torch

# Dense peak TFLOPs per GPU (vendor data sheets, SXM parts); matched on the device name.
GPU_PEAK_TFLOPS = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "no": 67.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "no": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "no": 19.5},
    "L4": {"bf16": 121.0, "fp16": 121.0, "no": 30.3},
    "A10": {"bf16": 125.0, "fp16": 125.0, "no": 31.2},
}


def flops_per_token(config, seq_length: int, num_params: int) -> float:
    """Training FLOPs per token (forward + backward), as in PaLM appendix B: 6N + 12·L·d·T.

    N counts every parameter that takes part in a matmul (the tied embedding does, as the LM
    head; the position embedding is a lookup only). Recomputation by gradient checkpointing is
    not counted, as usual for MFU.
    """
    n = num_params - config.n_positions * config.n_embd
    return 6.0 * n + 12.0 * config.n_layer * config.n_embd * seq_length


def peak_flops(device: torch.device, mixed_precision: str, configured_tflops: float | None) -> tuple[float, str]:
    """Peak FLOP/s of one device and where the figure comes from."""
    if configured_tflops:
        return configured_tflops * 1e12, "config"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAK_TFLOPS.items():
            if key in name:
                return peaks[mixed_precision] * 1e12, f"data sheet ({name})"
    if device.type == "cpu" and (cpu := cpu_peak_flops()) is not None:
        return cpu
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)
    return measure_matmul_flops(device, dtype), f"measured matmul ({device.type}, {dtype})"


def cpu_peak_flops() -> tuple[float, str] | None:
    """fp32 peak of the cores torch uses: threads × clock × 32 FLOPs per cycle (two 256-bit FMA units).

    Right for AVX2/AVX-512 cores of AMD Zen 2-4 and most Intel parts; Intel server cores with two
    512-bit FMA units reach twice that (set train.peak_tflops there). None without /proc/cpuinfo.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    flags = next((line.split(":")[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    if not mhz or not {"avx2", "fma"} <= set(flags):
        return None
    threads = torch.get_num_threads()
    return threads * max(mhz) * 1e6 * 32, f"{threads} CPU thread(s) × {max(mhz):.0f} MHz × 32 FLOP/cycle"


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 1024, seconds: float = 0.3) -> float:
    """FLOP/s of a square matmul: the practical peak where no data sheet is known."""
    generator = torch.Generator(device).manual_seed(0)  # leaves the global RNG (dropout) untouched
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    a @ b  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return 2 * n**3 * calls / (time.perf_counter() - start)


class Throughput:
    """tokens/s, TFLOP/s and MFU over the optimizer steps of one logging window."""

    def __init__(self, tokens_per_step: int, flops_per_step: float, peak: float, world: int):
        self.tokens_per_step, self.flops_per_step = tokens_per_step, flops_per_step
        self.peak_all = peak * world  # of every device together
        self.restart()

    def restart(self) -> None:
        self.steps, self.start = 0, time.perf_counter()

    def step(self) -> None:
        self.steps += 1

    def figures(self) -> dict:
        elapsed = time.perf_counter() - self.start
        achieved = self.flops_per_step * self.steps / elapsed
        return {"tokens_per_s": self.tokens_per_step * self.steps / elapsed, "tflops": achieved / 1e12,
                "mfu": achieved / self.peak_all}
