"""A peer of `c3po-apply --preset official`: the published C3PO procedure (tianyi-lab/C3PO,
olmoe_optimizer.py, `re_infer_case`), written anew from reading it, over transformers and
sentence-transformers, with the published override semantics (the router's distribution at
the last position of every forward call replaced by the custom one, normalised, then top-k).
Scripts/check-official runs it against our tool and compares question by question.

The procedure, as published:
  - the test case's whole input_text and every reference's are embedded (all-MiniLM-L6-v2);
    the 3 references of highest cosine similarity are the neighbours (no overlap cut);
  - for the last 5 layers (all when fewer), the neighbours' routing weights averaged with their
    similarities as weights, divided by the similarities' sum, renormalised to sum 1 (float32);
  - the re-inference prompt is the instruction + input_text; the answer is read from the
    generated text (prompt included) by `extract_answer_option`'s rules, or, in letter mode
    (the toolkit's default reading), from the label logits at the prompt's last position.
"""
import argparse, importlib.machinery, importlib.util, json, os, re, sys
import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
INSTRUCTION = ("Answer with only a single letter (A, B, C, or D) representing the correct option. "
               "Do not explain your reasoning. Just output the letter of the answer. ")


def extract_letter(text):
    """The published rules for the answer letter, re-implemented."""
    i = text.find("Answer:")
    if i != -1:
        for word in text[i + len("Answer:"):].strip().split():
            w = word.strip().upper()
            if w and w[0] in "ABCD":
                return w[0]
    for word in text.split():
        w = word.strip().upper()
        if w in ("A", "B", "C", "D"):
            return w
        if len(w) <= 3 and w[:2] in ("A.", "B.", "C.", "D.", "A)", "B)", "C)", "D)"):
            return w[0]
    m = re.findall(r"\b([A-D])[\.|\)]?\b", text.upper())
    return m[0] if m else ""


def router_patch():
    """make-moe-fixtures' router patch: OVERRIDE[layer] replaces the last row's distribution."""
    loader = importlib.machinery.SourceFileLoader("moe_fixtures", os.path.join(ROOT, "Scripts", "make-moe-fixtures"))
    spec = importlib.util.spec_from_loader("moe_fixtures", loader)
    fx = importlib.util.module_from_spec(spec)
    loader.exec_module(fx)
    fx.modeling_olmoe.OlmoeTopKRouter.forward = fx.patched_router_forward
    return fx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True, help="our index folder (built with --embed-text prompt): the reference cases")
    ap.add_argument("--model", required=True)
    ap.add_argument("--embedder", required=True)
    ap.add_argument("--test", required=True, help="dataset JSONL")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--answer", choices=["letter", "generate"], default="letter")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--weights", default=None, help="our --emit-weights file: use these weights instead of the peer's own")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    from sentence_transformers import SentenceTransformer, util
    from transformers import OlmoeForCausalLM, PreTrainedTokenizerFast

    fx = router_patch()
    refs = [json.loads(l) for l in open(os.path.join(a.index, "records.jsonl"))]
    pathways = np.load(os.path.join(a.index, "pathways.npy"))  # [refs, layers, experts], float32
    tests = [json.loads(l) for l in open(a.test)][: a.limit]
    model = OlmoeForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager").eval()
    for l, layer in enumerate(model.model.layers):
        layer.mlp.gate.layer_idx = l
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.model, "tokenizer.json"))
    L, E = pathways.shape[1], pathways.shape[2]
    target_layers = list(range(L))[-5:]
    embedder = SentenceTransformer(a.embedder, device="cpu")
    ref_emb = embedder.encode([r["prompt"] for r in refs], convert_to_tensor=True)
    emitted = json.load(open(a.weights)) if a.weights else None

    def answer(prompt_ids, labels, override):
        fx.OVERRIDE.clear()
        if override:
            fx.OVERRIDE.update({l: torch.tensor(w, dtype=torch.float32) for l, w in override.items()})
        ids = torch.tensor([prompt_ids])
        with torch.no_grad():
            if a.answer == "letter":
                logits = model(ids, use_cache=False).logits[0, -1]
                label_ids = [tok.encode(" " + lab, add_special_tokens=False) for lab in labels]
                assert all(len(x) == 1 for x in label_ids), label_ids
                scores = [logits[x[0]].item() for x in label_ids]
                out = (labels[int(np.argmax(scores))], None)
            else:
                gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.max_new_tokens, do_sample=False,
                                     pad_token_id=model.config.pad_token_id)
                text = tok.decode(gen[0], skip_special_tokens=True)
                out = (extract_letter(text), text)
        fx.OVERRIDE.clear()
        return out

    rows = []
    for q in tests:
        case_emb = embedder.encode(q["prompt"], convert_to_tensor=True)
        scores = util.cos_sim(case_emb, ref_emb)[0]
        top = torch.topk(scores, k=3)
        idx, sims = top.indices.tolist(), top.values.tolist()
        override = {}
        for l in target_layers:
            acc, total = None, 0.0
            for s, i in zip(sims, idx):
                w = pathways[i, l].astype(np.float32)
                acc = s * w if acc is None else acc + s * w
                total += s
            new = acc / total
            new = new / new.sum()
            override[l] = [float(x) for x in new]
        if emitted is not None:
            o = emitted.get(q["id"])
            used = {int(e["layer"]): [e["routing_weights"][f"expert_{j}"] for j in range(E)] for e in o["layers"]} if o else None
        else:
            used = override
        prompt_ids = tok(INSTRUCTION + q["prompt"]).input_ids
        (base, base_text), (c3po, c3po_text) = answer(prompt_ids, q["labels"], None), answer(prompt_ids, q["labels"], used)
        rows.append({"id": q["id"], "neighbors": [refs[i]["id"] for i in idx], "similarities": sims,
                     "weights": {str(l): w for l, w in override.items()},
                     "base_answer": base, "c3po_answer": c3po, "base_text": base_text, "c3po_text": c3po_text})
    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
