import os as _os

# Same inputs, same bytes across x86-64 machines, as far as cairn can pin it: PyTorch and oneDNN
# pick their CPU kernels by instruction set, and AVX-512 kernels sum in another order than AVX2
# ones (an mnist model trained on an AVX2-only EPYC stopped at epoch 18, here at 20). Every cairn
# process uses the AVX2 kernels unless CAIRN_CPU_ISA=native. MKL, torch's BLAS, is not reached by
# these and picks by CPU vendor: an Intel Xeon with AMX trains other bytes (docs/machines.md).
# Read when torch (numpy, for OpenBLAS below) is first imported, so this must run before: flows
# is imported first.
CPU_ISA = _os.environ.get("CAIRN_CPU_ISA", "avx2")
if CPU_ISA != "native":
    _os.environ.setdefault("ATEN_CPU_CAPABILITY", CPU_ISA)
    _os.environ.setdefault("DNNL_MAX_CPU_ISA", CPU_ISA.upper())
    _os.environ.setdefault("ONEDNN_MAX_CPU_ISA", CPU_ISA.upper())


def _cpu_flags() -> set[str]:
    """The x86 CPU's feature flags (Linux), or none known."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((set(line.split()) for line in cpuinfo if line.startswith("flags")), set())
    except OSError:
        return set()


# numpy's and scipy's OpenBLAS pick their kernels by CPU model too, when numpy loads: Haswell on
# an AVX2-only EPYC, AVX-512 ones where the CPU has them, and those fit the sales regression to
# other last bits (train@sales differed between the two EPYCs, docs/machines.md). So OpenBLAS runs
# the kernels of the pinned set; forcing kernels the CPU lacks would be an illegal instruction, so
# on such a CPU (no AVX2 and FMA, or not x86) OpenBLAS keeps its own choice.
_OPENBLAS_CORES = {
    "avx2": ("Haswell", {"avx2", "fma"}),
    "avx512": ("SkylakeX", {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
}
if CPU_ISA in _OPENBLAS_CORES and _OPENBLAS_CORES[CPU_ISA][1] <= _cpu_flags():
    _os.environ.setdefault("OPENBLAS_CORETYPE", _OPENBLAS_CORES[CPU_ISA][0])

# A tool that handles private data does not phone home by default: Prefect's client-side usage
# telemetry (sent when prefect is imported) is off unless the user sets DO_NOT_TRACK=0. The
# server's analytics are off in flows/service/server.py, DVC's in .dvc/config (`make init` writes
# it) and in every process cairn starts (DVC would fork an analytics daemon for each command).
_os.environ.setdefault("DO_NOT_TRACK", "1")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")
