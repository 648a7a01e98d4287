"""Stand-ins for the CUDA libraries that PyPI's torch wheel links against, for CPU-only tests.

PyPI's only Linux x86_64 build of torch 2.6.0 is the CUDA one: `import torch` loads
libtorch_cuda.so, which needs libcudart, libcublas, libcudnn, libnccl, ... (about 2.5 GB of
nvidia-* wheels). The container-fidelity tests run on the CPU and never call CUDA, so each of
those libraries is replaced by a tiny shared object with the same SONAME, the same symbol
version node, and every symbol torch takes from it; each function returns 100
(cudaErrorNoDevice), so `torch.cuda.is_available()` answers False as on a machine without a GPU.

Usage: python cuda_stubs.py <site-packages>/torch/lib
The stubs go into that folder, which every torch library has on its RPATH ($ORIGIN).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

# Unversioned symbols (NCCL, cuSPARSELt, cuRAND, the driver, NVRTC) by prefix -> library.
UNVERSIONED_OWNERS = (
    ("nccl", "libnccl.so.2"),
    ("cusparseLt", "libcusparseLt.so.0"),
    ("curand", "libcurand.so.10"),
    ("nvrtc", "libnvrtc.so.12"),
    ("cu", "libcuda.so.1"),
)
NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")
CUDA_LIBRARY = re.compile(r"^lib(cu|nccl|nv)[A-Za-z_]*\.so(\.\d+)*$")
CUDA_ERROR_NO_DEVICE = 100


def readelf(*args: str) -> str:
    return subprocess.run(
        ["readelf", "-W", *args], check=True, capture_output=True, text=True
    ).stdout


def needed_libraries(libs: list[Path]) -> set[str]:
    names: set[str] = set()
    for lib in libs:
        names.update(NEEDED.findall(readelf("-d", str(lib))))
    return {n for n in names if CUDA_LIBRARY.match(n)}


def symbols_by_library(libs: list[Path], present: set[str]) -> dict[str, set[str]]:
    """Every undefined symbol of `libs` that comes from a CUDA library, keyed by its SONAME."""
    wanted: dict[str, set[str]] = defaultdict(set)
    defined: set[str] = set()
    unversioned: set[str] = set()
    for lib in libs:
        for line in readelf("--dyn-syms", str(lib)).splitlines():
            fields = line.split()
            if len(fields) < 8 or not fields[0].endswith(":"):
                continue
            name = fields[7]
            if fields[6] != "UND":
                defined.add(name.split("@")[0])
                continue
            if "@" in name:
                symbol, version = name.split("@", 1)
                if version in present:  # the version node is named after the SONAME
                    wanted[version].add(symbol)
            elif fields[4] != "WEAK":
                unversioned.add(name)
    for symbol in unversioned - defined:
        for prefix, owner in UNVERSIONED_OWNERS:
            if symbol.startswith(prefix) and owner in present:
                wanted[owner].add(symbol)
                break
    for soname in present:
        wanted.setdefault(soname, set())
    return wanted


def build_stub(soname: str, symbols: set[str], out_dir: Path, work: Path) -> None:
    asm = [".text"]
    for symbol in sorted(symbols):
        asm += [
            f".globl {symbol}",
            f".type {symbol}, @function",
            f"{symbol}:",
            f"  movl ${CUDA_ERROR_NO_DEVICE}, %eax",
            "  ret",
        ]
    source = work / f"{soname}.s"
    source.write_text("\n".join(asm) + "\n")
    script = work / f"{soname}.map"
    exported = f"global: {''.join(f'{s};' for s in sorted(symbols))} " if symbols else ""
    script.write_text(f"{soname} {{ {exported}local: *; }};\n")
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-nostdlib",
            f"-Wl,-soname,{soname}",
            f"-Wl,--version-script={script}",
            "-o",
            str(out_dir / soname),
            str(source),
        ],
        check=True,
    )


def main(torch_lib: str) -> int:
    out_dir = Path(torch_lib)
    libs = sorted(out_dir.glob("*.so*")) + sorted(out_dir.parent.glob("_C*.so"))
    if not any(lib.name == "libtorch_cuda.so" for lib in libs):
        print(f"error: {out_dir} holds no libtorch_cuda.so; is it torch/lib?", file=sys.stderr)
        return 2
    present = needed_libraries(libs)
    with tempfile.TemporaryDirectory() as tmp:
        for soname, symbols in sorted(symbols_by_library(libs, present).items()):
            build_stub(soname, symbols, out_dir, Path(tmp))
    print(f"cuda stubs: {len(present)} libraries in {out_dir}: {' '.join(sorted(present))}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
