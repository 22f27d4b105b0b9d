import os as _os

# Same inputs, same bytes across x86-64 machines, as far as cairn can pin it: PyTorch and oneDNN
# pick their CPU kernels by instruction set, and AVX-512 kernels sum in another order than AVX2
# ones (an mnist model trained on an AVX2-only EPYC stopped at epoch 18, here at 20). Every cairn
# process uses the AVX2 kernels unless CAIRN_CPU_ISA=native. MKL, torch's BLAS, is not reached by
# these and picks by CPU vendor: an Intel Xeon with AMX trains other bytes (docs/machines.md).
# Read when torch is first imported, so this must run before: flows is imported first.
CPU_ISA = _os.environ.get("CAIRN_CPU_ISA", "avx2")
if CPU_ISA != "native":
    _os.environ.setdefault("ATEN_CPU_CAPABILITY", CPU_ISA)
    _os.environ.setdefault("DNNL_MAX_CPU_ISA", CPU_ISA.upper())
    _os.environ.setdefault("ONEDNN_MAX_CPU_ISA", CPU_ISA.upper())

# A tool that handles private data does not phone home by default: Prefect's client-side usage
# telemetry (sent when prefect is imported) is off unless the user sets DO_NOT_TRACK=0. The
# server's analytics are off in flows/service/server.py, DVC's in .dvc/config (`make init` writes
# it) and in every process cairn starts (DVC would fork an analytics daemon for each command).
_os.environ.setdefault("DO_NOT_TRACK", "1")
_os.environ.setdefault("DVC_NO_ANALYTICS", "1")
