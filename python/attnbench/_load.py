"""Load the compiled core, attnbench._core.

The module links cuBLAS dynamically.  Its rpath finds the CUDA toolkit it was
built against and the NVIDIA wheels that PyTorch installs next to it; where
neither holds libcublas (a wheel installed into another site-packages), the
first failure is answered by preloading cuBLAS from any `nvidia` package on
sys.path and trying once more.
"""
import ctypes
import importlib
import os
import sys


def _preload_cublas():
    for entry in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cublas/lib"):
            d = os.path.join(entry or ".", sub)
            lt, blas = os.path.join(d, "libcublasLt.so.13"), os.path.join(d, "libcublas.so.13")
            if os.path.exists(blas):
                if os.path.exists(lt):
                    ctypes.CDLL(lt, mode=ctypes.RTLD_GLOBAL)
                ctypes.CDLL(blas, mode=ctypes.RTLD_GLOBAL)
                return True
    return False


def load_core():
    try:
        return importlib.import_module("attnbench._core")
    except ImportError as first:
        if "libcublas" not in str(first) or not _preload_cublas():
            raise ImportError(
                f"attnbench could not load its compiled core: {first}. "
                "It needs the CUDA Toolkit's cuBLAS (libcublas.so.13): install CUDA 13, "
                "or `pip install nvidia-cublas`, or add its lib folder to LD_LIBRARY_PATH."
            ) from first
        return importlib.import_module("attnbench._core")
