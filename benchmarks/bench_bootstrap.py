"""Start-up cost of the .pth bootstrap for a Python process that never imports llamafactory.

Two throw-away venvs see the same packages (through a plain path .pth); only one also has
lf_thinkplugin.pth. `python -c pass` runs alternately in both, N times each; medians, their ratio
and the absolute difference are printed (target: within noise, < 5 ms). Also prints the import
time of `lf_thinkplugin.activation.bootstrap` itself from `-X importtime`.

    python benchmarks/bench_bootstrap.py [--runs 40]
"""

import argparse
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_venv(root: Path, with_pth: bool) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next((root / "lib").glob("python*/site-packages"))
    (site / "deps.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
    if with_pth:
        (site / "lf_thinkplugin.pth").write_text((REPO / "lf_thinkplugin" / "lf_thinkplugin.pth").read_text())
    return root / "bin" / "python"


def time_start(python: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        without = make_venv(Path(tmp) / "without", with_pth=False)
        with_pth = make_venv(Path(tmp) / "with", with_pth=True)
        hooked = subprocess.run([str(with_pth), "-c", "import sys; print(sum(type(f).__name__ == '_LlamaFactoryImportHook' for f in sys.meta_path))"],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert hooked == "1", "the .pth bootstrap did not run in the 'with' venv"
        for python in (without, with_pth):  # warm the page cache
            time_start(python)
        a, b = [], []
        for _ in range(args.runs):
            a.append(time_start(without))
            b.append(time_start(with_pth))
        importtime = subprocess.run([str(with_pth), "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
        own = [line for line in importtime.splitlines() if "lf_thinkplugin" in line]
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"python -c pass, median of {args.runs} alternating runs:")
    print(f"  without .pth: {ma * 1000:.1f} ms   with .pth: {mb * 1000:.1f} ms")
    print(f"  ratio with/without: {mb / ma:.3f}   absolute: {(mb - ma) * 1000:+.2f} ms (target < 5 ms)")
    print(f"  spread (stdev) without: {statistics.stdev(a) * 1000:.2f} ms, with: {statistics.stdev(b) * 1000:.2f} ms")
    print("  -X importtime (us, self | cumulative | module):")
    for line in own:
        print("   " + line.split(":", 1)[1].strip())


if __name__ == "__main__":
    main()
