#!/usr/bin/env python3
"""The host's bounds for reading benchmark numbers: CPU model and SIMD/AMX flags, core count, memory
bandwidth (numpy copy of a 512 MiB array), and numpy's f32 sgemm rate (its bundled OpenBLAS) at
4096^3 on 2 threads and at an expert's shape (16 x 1024 times 1024 x 512) on 1 thread.

Usage:  python3 Scripts/benchlib/host.py [--quick]     prints host_bounds() as JSON
From Python:  from benchlib import host; b = host.host_bounds(); print(host.summary(b))

Every measurement runs in a fresh Python child, since OPENBLAS_NUM_THREADS must be set before numpy
loads; each figure is the median of 5 timed runs after one warm-up.
"""
import json, os, statistics, subprocess, sys, time

FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
         "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
RUNS = 5


def cpu_info():
    model, flags = None, set()
    try:
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            k = k.strip()
            if k == "model name" and model is None:
                model = v.strip()
            elif k == "flags" and not flags:
                flags = set(v.split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"model": model, "cores": os.cpu_count(), "cores_usable": usable,
            "flags": [f for f in FLAGS if f in flags], "flags_missing": [f for f in FLAGS if f not in flags]}


def _blas_info(np):
    """numpy's BLAS: name, version and the OpenBLAS core it picked (threadpoolctl when installed)."""
    out = {}
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out = {"name": b.get("name"), "version": b.get("version"), "config": b.get("openblas configuration")}
    except Exception:
        pass
    try:
        import threadpoolctl
        for x in threadpoolctl.threadpool_info():
            if x.get("user_api") == "blas":
                out.update(internal_api=x.get("internal_api"), core=x.get("architecture"),
                           threads=x.get("num_threads"), threading_layer=x.get("threading_layer"))
                break
    except Exception:
        pass
    return out


def _time(f, runs=RUNS):
    f()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def _child(kind, threads, quick):
    """Runs in the child process (OPENBLAS_NUM_THREADS already set): one measurement as a dict."""
    import numpy as np
    runs = 3 if quick else RUNS
    if kind == "membw":
        import threading
        n = (64 if quick else 512) * 2**20 // 4
        src = np.ones(n, dtype=np.float32)
        dst = np.zeros(n, dtype=np.float32)  # touched, so no page faults are timed
        parts = [(src[i * n // threads:(i + 1) * n // threads], dst[i * n // threads:(i + 1) * n // threads])
                 for i in range(threads)]

        def copy():
            if threads == 1:
                np.copyto(dst, src)
                return
            ws = [threading.Thread(target=np.copyto, args=(d, s)) for s, d in parts]  # copyto drops the GIL
            for w in ws:
                w.start()
            for w in ws:
                w.join()
        med, ts = _time(copy, runs)
        return {"what": "membw", "threads": threads, "array_mib": n * 4 // 2**20,
                "gb_per_s": 2 * n * 4 / med / 1e9, "samples_s": ts, "note": "read+write bytes of a copy / time"}
    if kind in ("sgemm", "sgemm_expert"):
        m, k, n = (4096, 4096, 4096) if kind == "sgemm" else (16, 1024, 512)
        if quick and kind == "sgemm":
            m = k = n = 2048
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        inner = max(1, int(2e9 // (2 * m * k * n)))  # ~2 GFLOP a sample: repeat small products

        def mm():
            for _ in range(inner):
                np.matmul(a, b, out=c)
        med, ts = _time(mm, runs)
        return {"what": kind, "threads": threads, "shape": [m, k, n], "products_per_sample": inner,
                "gflop_per_s": 2 * m * k * n * inner / med / 1e9, "samples_s": ts, "blas": _blas_info(np)}
    raise ValueError(kind)


def measure(kind, threads, quick=False):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, str(threads)] + (["--quick"] if quick else [])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return {"what": kind, "threads": threads, "error": (r.stderr or r.stdout)[-500:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def host_bounds(quick=False):
    """CPU, memory bandwidth on 1 and 2 threads, sgemm 4096^3 on 2 threads, sgemm at expert shape on 1 thread."""
    import platform
    out = {"cpu": cpu_info(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        out["mem_total_kb"] = int(open("/proc/meminfo").read().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        pass
    out["membw"] = [measure("membw", t, quick) for t in (1, 2)]
    out["sgemm"] = [measure("sgemm", 2, quick)]
    out["sgemm_expert"] = measure("sgemm_expert", 1, quick)
    blas = next((x["blas"] for x in out["sgemm"] if "blas" in x), {})
    out["numpy_blas"] = blas
    for x in out["sgemm"] + [out["sgemm_expert"]]:
        x.pop("blas", None)
    return out


def summary(b):
    """A few human lines (for stderr) from host_bounds()."""
    c = b["cpu"]
    lines = [f"host: {c['model']}, {c['cores']} cores ({c['cores_usable']} usable), flags: {' '.join(c['flags']) or '-'}"
             + (f" (no {' '.join(c['flags_missing'])})" if c["flags_missing"] else "")]

    def fmt(x, key, unit):
        return f"{x[key]:.1f} {unit}" if key in x else f"failed ({x.get('error', '?').strip().splitlines()[-1:]})"
    bw = ", ".join(f"{x['threads']} thread(s) {fmt(x, 'gb_per_s', 'GB/s')}" for x in b["membw"])
    lines.append(f"host: memory bandwidth (numpy copy, read+write): {bw}")
    blas = b.get("numpy_blas") or {}
    core = f"{blas.get('name', '?')} {blas.get('version', '')}".strip() + (f", core {blas['core']}" if blas.get("core") else "")
    gemm = ", ".join(f"{x['threads']} thread(s) {fmt(x, 'gflop_per_s', 'GFLOP/s')}" for x in b["sgemm"])
    e = b["sgemm_expert"]
    lines.append(f"host: numpy f32 sgemm {'x'.join(map(str, (b['sgemm'][0].get('shape') or [4096] * 3)))} ({core}): {gemm}; "
                 f"expert shape 16x1024 @ 1024x512, 1 thread: {fmt(e, 'gflop_per_s', 'GFLOP/s')}")
    return "\n".join(lines)


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    if args[:1] == ["--child"]:
        print(json.dumps(_child(args[1], int(args[2]), quick)))
        return
    b = host_bounds(quick)
    print(summary(b), file=sys.stderr)
    print(json.dumps(b, indent=1))


if __name__ == "__main__":
    main()
