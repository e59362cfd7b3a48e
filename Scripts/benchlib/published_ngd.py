#!/usr/bin/env python3
"""What the PUBLISHED way of neighbourhood gradient descent (NGD, C3PO's test-time re-mixing) costs
per test question with Hugging Face transformers on CPU.

Usage (repository root):

    python3 Scripts/benchlib/published_ngd.py --model DIR [--tokens 100] [--steps 10] [--k 3]
        [--critical-layers 5] [--repeats 3] [--threads 2] [--dtype bfloat16|float32]
        [--attn sdpa|eager] [--experts eager|grouped_mm|batched_mm] [--all-logits]

From Python:  from benchlib import published_ngd; r = published_ngd.measure(DIR, 100, 10, 3, 5, 3, 2,
"bfloat16", "sdpa")  (the same dict the CLI prints as one JSON object on stdout).

DIR is an OLMoE checkpoint folder (config.json with model_type "olmoe", model.safetensors), loaded with
transformers.OlmoeForCausalLM.from_pretrained(DIR, dtype=<dtype>, attn_implementation=<attn>) in eval
mode, torch.set_num_threads(threads). --attn defaults to sdpa (what a user gets); --experts defaults to
transformers' own choice (None: grouped_mm in transformers 5.24), as a user gets.

The procedure measured (per test question): NGD minimises the k neighbours' kernel-weighted loss over
the test sample's routing weights omega: per critical layer (the last --critical-layers routed layers) a
weight vector over all experts, applied at the LAST prompt position. Each of --steps steps runs, for each
of the k neighbours, one forward pass of the neighbour's prompt through the whole model with omega applied
at its last position in the critical layers, the cross-entropy of the 4 label logits at the last
position, and a backward pass to omega; after the steps, one forward pass of the test prompt with the
final omega. Hence

    per_question_s = steps * k * forward_backward_s + forward_s
    full_passes_per_question = per_question_s / forward_s

The optimiser update of omega, the kernel weights and the neighbour search are not counted (they are
tiny next to the passes, or done once beforehand).

The override: OLMoE's router, transformers.models.olmoe.modeling_olmoe.OlmoeTopKRouter.forward, is
replaced (only inside `patched_router()`, restored afterwards) by make-moe-fixtures'
`patched_router_forward` (loaded from Scripts/make-moe-fixtures with SourceFileLoader), the same patch the
golden.json and gradient.json fixtures use: in the layers listed in its OVERRIDE dict the softmax row of
the last position is replaced by w / w.sum() in a clone of the softmax, top-k is taken from that row as
the model does (torch.topk, renormalised only if config.norm_topk_prob). omega is one float32 leaf
tensor per critical layer with requires_grad=True; autograd follows the clone into it. The script asserts
after the first backward that every omega.grad exists and is nonzero, i.e. that no path is cut.

Model parameters are frozen (requires_grad False), so the backward computes activation gradients only,
no weight gradients: the cheapest way to get d loss / d omega through the model with autograd. Two
consequences worth knowing when reading the numbers: (1) the backward starts at the earliest critical
layer, since nothing before it depends on omega (with the default 5 critical layers of a 16-layer
OLMoE-1B-7B it traverses the last 5 layers and the head); (2) within those layers autograd does the work
for the full sequence (all positions' attention and expert inputs), although with causal attention only
the last position actually depends on omega, because autograd does not know that the other rows of the
gradient are zero.

Prompts: k distinct random token-id prompts of length --tokens (torch.Generator seed SEED); prompt 0 is
the one timed. omega: softmax(1.5 * randn(E)) + 0.01 per critical layer (fixed seed); where it is does not
change the cost beyond which experts the last position hits. Labels: " A", " B", " C", " D" when each is
one token of DIR/tokenizer.json, else 4 fixed ids below the vocabulary size. Forward calls use
use_cache=False and, unless --all-logits, logits_to_keep=1 (only the last position's logits are computed,
as Scripts/bench-moe does; this favours the published procedure, whose loss only needs that row).

Timing: one warm-up of each, then the medians of --repeats of (a) forward only under torch.no_grad(), with
omega applied (the final test-prompt pass), and (b) forward + loss + backward, omega.grad zeroed each
time, the two interleaved; time.perf_counter. The "cpu" field is the model name from /proc/cpuinfo.
"""
import argparse
import contextlib
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import transformers

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SEED = 1234
LABEL_TEXTS = [" A", " B", " C", " D"]
FALLBACK_LABELS = [5, 17, 42, 99]
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}

_moe_fixtures = None


def make_moe_fixtures():
    """Scripts/make-moe-fixtures as a module (its OVERRIDE dict and patched_router_forward)."""
    global _moe_fixtures
    if _moe_fixtures is None:
        loader = importlib.machinery.SourceFileLoader("make_moe_fixtures",
                                                      os.path.join(ROOT, "Scripts", "make-moe-fixtures"))
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
        loader.exec_module(module)
        _moe_fixtures = module
    return _moe_fixtures


@contextlib.contextmanager
def patched_router():
    """OlmoeTopKRouter.forward replaced by make-moe-fixtures' patched_router_forward while inside."""
    from transformers.models.olmoe import modeling_olmoe
    fixtures = make_moe_fixtures()
    cls = modeling_olmoe.OlmoeTopKRouter
    original = cls.forward
    cls.forward = fixtures.patched_router_forward
    try:
        yield fixtures.OVERRIDE
    finally:
        cls.forward = original
        fixtures.OVERRIDE.clear()


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return None


def label_ids_for(model_dir, vocab):
    path = os.path.join(model_dir, "tokenizer.json")
    if os.path.exists(path):
        try:
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(path)
            ids = [tok.encode(t, add_special_tokens=False).ids for t in LABEL_TEXTS]
            if all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == 4 and all(i[0] < vocab for i in ids):
                return [i[0] for i in ids]
        except Exception:  # noqa: BLE001 -- any tokenizer trouble: the fallback ids cost the same
            pass
    return [i % vocab for i in FALLBACK_LABELS]


def load(model_dir, dtype, attn, experts=None, threads=2):
    torch.set_num_threads(threads)
    transformers.utils.logging.disable_progress_bar()
    kwargs = dict(dtype=DTYPES[dtype] if isinstance(dtype, str) else dtype, attn_implementation=attn)
    if experts:
        kwargs["experts_implementation"] = experts
    model = transformers.OlmoeForCausalLM.from_pretrained(model_dir, **kwargs).eval()
    assert model.config.model_type == "olmoe", model.config.model_type
    model.requires_grad_(False)  # frozen: the backward computes activation gradients only
    for l, layer in enumerate(model.model.layers):
        layer.mlp.gate.layer_idx = l  # the router does not know its layer; the patch needs it
    return model


def measure(model_dir, tokens=100, steps=10, k=3, critical_layers=5, repeats=3, threads=2, dtype="bfloat16",
            attn="sdpa", experts=None, all_logits=False):
    """Times one forward (no_grad) and one forward+backward to omega of a `tokens`-long prompt; returns
    the dict the CLI prints (see the module docstring)."""
    model = load(model_dir, dtype, attn, experts, threads)
    cfg = model.config
    routed = list(range(len(model.model.layers)))  # every OLMoE decoder layer is an MoE block
    if not 1 <= critical_layers <= len(routed):
        raise ValueError(f"--critical-layers {critical_layers}: the model has {len(routed)} routed layers")
    critical = routed[-critical_layers:]
    g = torch.Generator().manual_seed(SEED)
    prompts = [torch.randint(0, cfg.vocab_size, (1, tokens), generator=g) for _ in range(k)]
    omega = {l: (torch.softmax(1.5 * torch.randn(cfg.num_experts, generator=g), 0) + 0.01).requires_grad_(True)
             for l in critical}
    label_ids = torch.tensor(label_ids_for(model_dir, cfg.vocab_size))
    target = torch.tensor([0])
    call = dict(use_cache=False) if all_logits else dict(use_cache=False, logits_to_keep=1)
    ids = prompts[0]

    with patched_router() as override:
        override.update(omega)

        def forward():
            with torch.no_grad():
                return model(ids, **call).logits[0, -1]

        def forward_backward():
            for w in omega.values():
                if w.grad is not None:
                    w.grad.zero_()
            logits = model(ids, **call).logits[0, -1]
            loss = F.cross_entropy(logits[label_ids].float().unsqueeze(0), target)
            loss.backward()
            return loss

        # Warm-up, and the check that gradient reaches every omega (and that omega changes the output).
        out = forward()
        forward_backward()
        for l, w in omega.items():
            assert w.grad is not None, f"no gradient reaches omega of layer {l}"
            assert bool((w.grad != 0).any()) and bool(torch.isfinite(w.grad).all()), \
                f"zero or non-finite gradient at omega of layer {l}: {w.grad}"
        override.clear()
        with torch.no_grad():
            plain = model(ids, **call).logits[0, -1]
        override.update(omega)
        assert not torch.equal(out, plain), "the override does not change the logits"

        # Interleaved, so that the VM's slower and faster minutes hit both alike.
        f_times, fb_times = [], []
        for _ in range(repeats):
            for fn, times in ((forward, f_times), (forward_backward, fb_times)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        forward_s, forward_backward_s = statistics.median(f_times), statistics.median(fb_times)

    per_question_s = steps * k * forward_backward_s + forward_s
    return {"torch": torch.__version__, "transformers": transformers.__version__, "threads": threads,
            "dtype": dtype if isinstance(dtype, str) else str(dtype).replace("torch.", ""),
            "attn": cfg._attn_implementation, "experts": cfg._experts_implementation,
            "logits_to_keep": 0 if all_logits else 1, "tokens": tokens, "steps": steps, "k": k,
            "critical_layers": critical_layers, "critical_layer_indices": critical,
            "layers": len(model.model.layers), "label_ids": label_ids.tolist(), "repeats": repeats,
            "forward_s": forward_s, "forward_backward_s": forward_backward_s,
            "per_question_s": per_question_s, "full_passes_per_question": per_question_s / forward_s,
            "cpu": cpu_model()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="OLMoE checkpoint folder (config.json, model.safetensors)")
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--critical-layers", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--experts", choices=["eager", "grouped_mm", "batched_mm"], default=None,
                    help="experts_implementation (default: transformers' own choice)")
    ap.add_argument("--all-logits", action="store_true",
                    help="compute logits at every position (default: logits_to_keep=1)")
    a = ap.parse_args(argv)
    r = measure(a.model, a.tokens, a.steps, a.k, a.critical_layers, a.repeats, a.threads, a.dtype, a.attn,
                experts=a.experts, all_logits=a.all_logits)
    print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
