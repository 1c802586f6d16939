"""Build attnbench's extension module `attnbench._core`.

The C core (csrc/*.c, C11) is compiled by setuptools as usual; the CUDA
kernels (kernels/*.cu) are compiled by nvcc into cached object files that
are linked into the same module.  No PyTorch build helpers are involved.

Environment:
  CUDA_HOME / CUDA_PATH   CUDA toolkit root (default: from `nvcc` on PATH, then /usr/local/cuda)
  ATTNBENCH_CUDA_ARCHS    ';'- or ','-separated targets (default "90a;80"): "90a" builds sm_90a
                          machine code; "80" builds sm_80 machine code plus compute_80 PTX
  ATTNBENCH_NVCC_FLAGS    extra nvcc flags (e.g. "-Xptxas -v" for the register report)
  ATTNBENCH_NVCC_JOBS     parallel nvcc processes (default: CPU count)
"""
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
DEFAULT_ARCHS = "90a;80"  # Hopper's wgmma/TMA kernels need sm_90a; sm_80 (+PTX) covers Ampere and newer


class BuildError(SystemExit):
    """Stops the build with one readable line instead of a traceback."""


def find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home:
            if not (Path(home) / "bin" / "nvcc").exists():
                raise BuildError(f"attnbench: {var}={home} has no bin/nvcc; point {var} at a CUDA toolkit (e.g. /usr/local/cuda)")
            return Path(home)
    nvcc = shutil.which("nvcc")
    if nvcc:
        return Path(nvcc).resolve().parent.parent
    if Path("/usr/local/cuda/bin/nvcc").exists():
        return Path("/usr/local/cuda")
    raise BuildError("attnbench: nvcc not found; install the CUDA Toolkit and set CUDA_HOME=/path/to/cuda (the folder holding bin/nvcc)")


def cuda_lib_dir(home):
    for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
        d = home / sub
        if (d / "libcudart_static.a").exists():
            return d
    raise BuildError(f"attnbench: no libcudart_static.a under {home}; set CUDA_HOME to a complete CUDA toolkit")


def gencode_flags(spec):
    flags = []
    for arch in (a.strip() for a in spec.replace(",", ";").split(";")):
        if not arch:
            continue
        num = arch.rstrip("af")
        if not num.isdigit():
            raise BuildError(f"attnbench: ATTNBENCH_CUDA_ARCHS entry {arch!r} is not like '90a' or '80'")
        if arch.endswith(("a", "f")):  # arch-specific targets: machine code only
            flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
        else:
            flags.append(f"-gencode=arch=compute_{num},code=[sm_{num},compute_{num}]")
    if not flags:
        raise BuildError("attnbench: ATTNBENCH_CUDA_ARCHS names no target")
    return flags


class CudaBuildExt(build_ext):
    """build_ext that first compiles kernels/*.cu with nvcc (cached, in parallel)."""

    def build_extensions(self):
        home = find_cuda_home()
        if not (home / "include" / "cuda_runtime.h").exists():
            raise BuildError(f"attnbench: no CUDA headers (include/cuda_runtime.h) under {home}; set CUDA_HOME to a complete CUDA toolkit")
        libdir = cuda_lib_dir(home)
        objects = self.compile_cuda(home)
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        for ext in self.extensions:
            ext.include_dirs += [str(home / "include")]
            ext.extra_objects += objects
            ext.depends += objects  # a changed kernel object must relink the module
            ext.library_dirs += [str(libdir)]
            # $ORIGIN paths find the NVIDIA wheels that PyTorch installs
            # (site-packages/nvidia/...); the toolkit path finds a system CUDA.
            rpaths = ["$ORIGIN/../nvidia/cu13/lib", "$ORIGIN/../nvidia/cublas/lib", str(libdir)]
            ext.extra_link_args += ["-Wl,--disable-new-dtags"] + [f"-Wl,-rpath,{p}" for p in rpaths]
        super().build_extensions()

    def compile_cuda(self, home):
        sources = sorted((ROOT / "kernels").glob("*.cu"))
        headers = sorted(list((ROOT / "kernels").glob("*.h")) + list((ROOT / "kernels").glob("*.cuh")))
        archs = os.environ.get("ATTNBENCH_CUDA_ARCHS", DEFAULT_ARCHS)
        flags = ["-O3", "-std=c++17", "--use_fast_math", "-Xcompiler", "-fPIC", "-lineinfo",
                 f"-I{ROOT / 'kernels'}", *gencode_flags(archs),
                 *shlex.split(os.environ.get("ATTNBENCH_NVCC_FLAGS", ""))]
        digest = hashlib.sha256()
        for h in headers:
            digest.update(h.read_bytes())
        # Objects depend on nvcc and the flags, not on Python: one cache for every interpreter.
        cache = ROOT / "build" / "nvcc"
        cache.mkdir(parents=True, exist_ok=True)
        nvcc = str(home / "bin" / "nvcc")

        def compile_one(src):
            # The key leaves out the checkout's path, so a cache built in one checkout serves another.
            flag_text = " ".join(flags).replace(str(ROOT), "<root>")
            key = hashlib.sha256(digest.digest() + src.read_bytes() + flag_text.encode()).hexdigest()[:16]
            obj = cache / f"{src.stem}-{key}.o"
            if obj.exists():
                return obj, f"nvcc: {src.name} up to date ({obj.name})", ""
            cmd = [nvcc, "-c", str(src), "-o", str(obj) + ".tmp", *flags]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"attnbench: nvcc failed on {src.name}:\n{' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
            os.replace(str(obj) + ".tmp", obj)
            return obj, " ".join(cmd), proc.stdout + proc.stderr

        jobs = int(os.environ.get("ATTNBENCH_NVCC_JOBS", os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(compile_one, sources))
        for _, cmd, out in results:
            print(cmd, flush=True)
            if out.strip():
                print(out, file=sys.stderr, flush=True)
        return [str(obj) for obj, _, _ in results]


def numpy_include():
    try:
        import numpy
    except ImportError:
        raise BuildError("attnbench: numpy is needed to build (pip install numpy, or build without --no-build-isolation)")
    return numpy.get_include()


core = Extension(
    "attnbench._core",
    sources=sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.c")),
    include_dirs=["csrc", "kernels", numpy_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_23_API_VERSION")],
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
    libraries=["cudart_static", "cublas", "stdc++", "rt", "pthread", "dl", "m"],
)

setup(ext_modules=[core], cmdclass={"build_ext": CudaBuildExt})
