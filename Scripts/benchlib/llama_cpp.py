"""llama.cpp as a side-by-side reference for the MoE benchmarks. Nothing of it is in the repository:
everything lives in a cache folder (default ~/.cache/c3po/llama.cpp; env C3PO_LLAMA_CACHE or an
explicit path overrides it):

  sdist/llama_cpp_python-V.tar.gz   the PyPI sdist of llama-cpp-python (it vendors llama.cpp)
  src/llama_cpp_python-V/           unpacked; vendor/llama.cpp is the source used
  build/bin/llama-bench             built once (Release, GGML_NATIVE, static), kept while the source is
  build/c3po-source.txt             the source folder the build came from

Checkpoints are converted with the vendored convert_hf_to_gguf.py (its own gguf-py) to
<checkpoint>/model-<outtype>.gguf, kept next to the checkpoint.

    ll = LlamaCpp(cache).prepare()            # LlamaCppError(step, message) on failure
    r = ll.bench(ll.convert(ckpt, "f32"), lengths=[128, 512], repeats=3)
"""
import glob, json, os, re, shutil, statistics, subprocess, sys, sysconfig, tarfile, tempfile, time

DEFAULT_CACHE = "~/.cache/c3po/llama.cpp"
CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF",
               "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DGGML_OPENMP=ON",
               "-DGGML_CCACHE=OFF"]
# Modules the converter may import that are not in this environment: pip names.
PIP_NAMES = {"yaml": "pyyaml", "sentencepiece": "sentencepiece", "tqdm": "tqdm", "google": "protobuf",
             "safetensors": "safetensors", "numpy": "numpy"}


class LlamaCppError(Exception):
    def __init__(self, step, message):
        super().__init__(f"llama.cpp {step} failed: {message}")
        self.step = step


def cache_dir(explicit=None):
    return os.path.abspath(os.path.expanduser(explicit or os.environ.get("C3PO_LLAMA_CACHE") or DEFAULT_CACHE))


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _tail(text, n=2500):
    return text[-n:].strip()


def _pip(args, step):
    r = subprocess.run([sys.executable, "-m", "pip"] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise LlamaCppError(step, f"`pip {' '.join(args)}` exited {r.returncode}:\n{_tail(r.stdout + r.stderr)}")
    return r


class LlamaCpp:
    def __init__(self, cache=None, threads=2):
        self.cache = cache_dir(cache)
        self.threads = threads
        self.src = None        # .../vendor/llama.cpp
        self.sdist_version = None
        self.bin = os.path.join(self.cache, "build", "bin", "llama-bench")
        self.build_seconds = None

    # ---- source -------------------------------------------------------------------------------
    def _sdists(self):
        return sorted(glob.glob(os.path.join(self.cache, "sdist", "llama_cpp_python-*.tar.gz")))

    def fetch_source(self):
        os.makedirs(os.path.join(self.cache, "sdist"), exist_ok=True)
        if not self._sdists():
            _log(f"llama.cpp: downloading the llama-cpp-python sdist into {self.cache}/sdist ...")
            dest = os.path.join(self.cache, "sdist")
            tries = [["download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "llama-cpp-python", "-d", dest],
                     ["download", "--no-deps", "--no-binary", ":all:", "llama-cpp-python", "-d", dest]]
            errors = []
            for i, a in enumerate(tries):
                try:
                    if i == 0:
                        try:
                            import scikit_build_core  # noqa: F401  (pip builds the sdist's metadata with it)
                        except ImportError:
                            _pip(["install", "-q", "scikit-build-core"], "source download (pip install scikit-build-core)")
                    _pip(a, "source download")
                except LlamaCppError as e:
                    errors.append(str(e))
                if self._sdists():
                    break
            if not self._sdists():
                raise LlamaCppError("source download", "no llama_cpp_python-*.tar.gz from pip:\n" + "\n".join(errors))
        sdist = self._sdists()[-1]
        name = os.path.basename(sdist)[:-len(".tar.gz")]
        self.sdist_version = name.split("-", 1)[1]
        root = os.path.join(self.cache, "src", name)
        self.src = os.path.join(root, "vendor", "llama.cpp")
        if not os.path.exists(os.path.join(self.src, "CMakeLists.txt")):
            _log(f"llama.cpp: unpacking {sdist} ...")
            tmp = tempfile.mkdtemp(dir=self.cache, prefix="unpack-")
            try:
                with tarfile.open(sdist) as t:
                    try:
                        t.extractall(tmp, filter="data")
                    except TypeError:
                        t.extractall(tmp)
                shutil.rmtree(root, ignore_errors=True)
                os.makedirs(os.path.dirname(root), exist_ok=True)
                os.replace(os.path.join(tmp, name), root)
            except Exception as e:
                raise LlamaCppError("source unpack", f"{sdist}: {e}")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.exists(os.path.join(self.src, "CMakeLists.txt")):
                raise LlamaCppError("source unpack", f"{sdist} has no vendor/llama.cpp")
        return self

    def version(self):
        """sdist version, the llama.cpp commit its changelog names, ggml's version."""
        v = {"llama_cpp_python": self.sdist_version}
        try:
            log = open(os.path.join(self.src, "..", "..", "CHANGELOG.md")).read()
            sec = log.split(f"## [{self.sdist_version}]", 1)[1].split("\n## [", 1)[0]
            m = re.search(r"llama\.cpp@([0-9a-f]{7,40})", sec)
            if m:
                v["llama_cpp_commit"] = m.group(1)
        except (OSError, IndexError):
            pass
        try:
            cc = open(os.path.join(self.cache, "build", "CMakeCache.txt")).read()
            cxx = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.*)$", cc, re.M).group(1)
            v["compiler"] = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, AttributeError, IndexError):
            pass
        try:
            cm = open(os.path.join(self.src, "ggml", "CMakeLists.txt")).read()
            v["ggml"] = ".".join(re.search(rf"set\(GGML_VERSION_{k}\s+(\d+)\)", cm).group(1) for k in ("MAJOR", "MINOR", "PATCH"))
        except (OSError, AttributeError):
            pass
        return v

    # ---- build --------------------------------------------------------------------------------
    def _cmake(self):
        c = shutil.which("cmake") or shutil.which("cmake", path=sysconfig.get_path("scripts"))
        if c:
            return c
        _log("llama.cpp: cmake not found, installing it with pip ...")
        try:
            _pip(["install", "-q", "cmake"], "build (pip install cmake)")
        except LlamaCppError:
            pass
        c = shutil.which("cmake") or shutil.which("cmake", path=sysconfig.get_path("scripts"))
        if not c:
            raise LlamaCppError("build", "no cmake (tried `pip install cmake`); install it: `apt-get install -y cmake`")
        return c

    def build(self):
        bdir = os.path.join(self.cache, "build")
        stamp = os.path.join(bdir, "c3po-source.txt")
        built_from = open(stamp).read().strip() if os.path.exists(stamp) else None
        if os.access(self.bin, os.X_OK) and built_from in (None, self.src):
            if built_from is None:
                open(stamp, "w").write(self.src + "\n")
            return self
        if built_from not in (None, self.src):
            _log(f"llama.cpp: the build came from {built_from}; rebuilding from {self.src}")
            shutil.rmtree(bdir)
        os.makedirs(bdir, exist_ok=True)
        cmake = self._cmake()
        jobs = str(max(1, min(2, os.cpu_count() or 1)))
        _log(f"llama.cpp: building llama-bench in {bdir} (-j {jobs}; logs build-*.log there) ...")
        t0 = time.time()
        for what, cmd in (("configure", [cmake, "-S", self.src, "-B", bdir] + CMAKE_FLAGS),
                          ("compile", [cmake, "--build", bdir, "--target", "llama-bench", "-j", jobs])):
            logf = os.path.join(bdir, f"build-{what}.log")
            with open(logf, "w") as f:
                r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise LlamaCppError(f"build ({what})", f"`{' '.join(cmd)}` exited {r.returncode}; {logf}:\n{_tail(open(logf).read())}")
        if not os.access(self.bin, os.X_OK):
            raise LlamaCppError("build", f"no {self.bin} after the build")
        open(stamp, "w").write(self.src + "\n")
        self.build_seconds = time.time() - t0
        _log(f"llama.cpp: built {self.bin} in {self.build_seconds:.0f} s")
        return self

    def prepare(self):
        return self.fetch_source().build()

    # ---- conversion ---------------------------------------------------------------------------
    def convert(self, ckpt, outtype):
        """<ckpt>/model-<outtype>.gguf, converted once; outtype f32, bf16, f16 or q8_0."""
        out = os.path.join(ckpt, f"model-{outtype}.gguf")
        if os.path.exists(out):
            return out
        script = os.path.join(self.src, "convert_hf_to_gguf.py")  # by its real path: it puts its gguf-py on sys.path
        tmp = out + ".tmp"
        cmd = [sys.executable, script, ckpt, "--outtype", outtype, "--outfile", tmp]
        env = dict(os.environ)
        env.pop("NO_LOCAL_GGUF", None)
        _log(f"llama.cpp: converting {ckpt} to {os.path.basename(out)} ...")
        installed = set()
        for _ in range(4):
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode == 0:
                break
            m = re.search(r"No module named '([\w.]+)'", r.stderr)
            mod = m and m.group(1).split(".")[0]
            if not mod or mod in installed or mod == "gguf":
                break
            installed.add(mod)
            _log(f"llama.cpp: the converter needs {mod}: pip install {PIP_NAMES.get(mod, mod)}")
            _pip(["install", "-q", PIP_NAMES.get(mod, mod)], f"conversion to {outtype} (pip install {PIP_NAMES.get(mod, mod)})")
        if r.returncode != 0 or not os.path.exists(tmp):
            if os.path.exists(tmp):
                os.remove(tmp)
            raise LlamaCppError(f"conversion to {outtype}", f"`{' '.join(cmd)}` exited {r.returncode}:\n{_tail(r.stderr)}")
        os.replace(tmp, out)
        return out

    # ---- benchmark ----------------------------------------------------------------------------
    def bench(self, gguf, lengths, repeats, label=None):
        """llama-bench prefill at each length (-n 0, -fa 1, threads): tokens/s (avg_ts; median of
        samples_ts) and the process's peak RSS. llama-bench warms up once before its repeats.

        Where it dies of SIGILL (ggml's AMX q8_0 kernels built by GCC 12, whose _tile_loadconfig tells the
        compiler it reads 8 bytes, so the tile config's stores are dropped), it runs again with --repack 0:
        no extra buffer types, so no AMX (on x86 the repack types do not cover q8_0 anyway)."""
        cmd = [self.bin, "-m", gguf, "-t", str(self.threads), "-fa", "1", "-p", ",".join(map(str, lengths)),
               "-n", "0", "-r", str(repeats), "-o", "json"]
        try:
            return self._bench(cmd, gguf, label)
        except LlamaCppError as e:
            if getattr(e, "returncode", None) not in (132, -4):
                raise
            _log(f"llama.cpp: llama-bench died of SIGILL on {os.path.basename(gguf)}; again with --repack 0 (no AMX)")
            out = self._bench(cmd[:-2] + ["--repack", "0"] + cmd[-2:], gguf, label)
            out["note"] = "SIGILL with the default extra buffer types (AMX); ran with --repack 0"
            return out

    def _bench(self, cmd, gguf, label):
        timev = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            if timev:
                full = [timev, "-v", "-o", tf.name] + cmd
            else:  # a fresh wrapper, so RUSAGE_CHILDREN is llama-bench's alone
                full = [sys.executable, "-c", "import resource, subprocess, sys; r = subprocess.run(sys.argv[2:]); "
                        "open(sys.argv[1], 'w').write('Maximum resident set size (kbytes): %d\\n' % "
                        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)", tf.name] + cmd
            r = subprocess.run(full, capture_output=True, text=True)
            timing = open(tf.name).read()
        if r.returncode != 0:
            e = LlamaCppError("llama-bench", f"`{' '.join(cmd)}` exited {r.returncode}:\n{_tail(r.stderr)}")
            e.returncode = r.returncode
            raise e
        try:
            rows = json.loads(r.stdout[r.stdout.index("["):])
        except ValueError as e:
            raise LlamaCppError("llama-bench", f"no JSON in its output ({e}):\n{_tail(r.stdout)}\n{_tail(r.stderr)}")
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing)
        rows = [x for x in rows if x.get("n_gen", 0) == 0 and x.get("n_prompt", 0) > 0]
        if not rows:
            raise LlamaCppError("llama-bench", f"no prefill rows in its JSON:\n{_tail(r.stdout)}")
        x0 = rows[0]
        ftype = x0.get("model_type", "")
        out = {"label": label or f"llama.cpp {os.path.basename(gguf)[6:-5]} ({ftype}, build {x0.get('build_commit')}, "
                                 f"{x0.get('n_threads')} threads, fa {x0.get('flash_attn')}"
                                 + ("" if x0.get("repack", True) else ", repack 0") + ")",
               "tps": {int(x["n_prompt"]): x["avg_ts"] for x in rows},
               "tps_median": {int(x["n_prompt"]): statistics.median(x["samples_ts"]) for x in rows if x.get("samples_ts")},
               "stddev_ts": {int(x["n_prompt"]): x.get("stddev_ts") for x in rows},
               "rss_kb": int(m.group(1)) if m else -1,
               "gguf": gguf, "gguf_bytes": os.path.getsize(gguf), "model_type": ftype,
               "cpu_info": x0.get("cpu_info"), "backends": x0.get("backends"), "build_commit": x0.get("build_commit"),
               "n_batch": x0.get("n_batch"), "n_ubatch": x0.get("n_ubatch"), "type_kv": [x0.get("type_k"), x0.get("type_v")],
               "load_mode": x0.get("load_mode", x0.get("use_mmap")), "repack": x0.get("repack"),
               "version": self.version(), "command": cmd}
        return out


def summary(key, v):
    """One stderr line like bench-moe's transformers ones."""
    tps = ", ".join(f"{n}: {t:.1f}" + (f" (median {v['tps_median'][n]:.1f})" if n in v.get("tps_median", {}) else "")
                    for n, t in v["tps"].items())
    return (f"{key}: {v['label']}: tokens/s {tps}; peak RSS {v['rss_kb'] / 1024:.0f} MiB"
            f" (gguf {v['gguf_bytes'] / 2**20:.0f} MiB)")
