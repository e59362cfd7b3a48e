"""Synthetic shard folders (Index/README.md, "Shards") for Scripts/bench-shards: R archive
records split over N shards by the toolkit's own rule (FNV-1a 64 of the id, then SplitMix64's
finalizer, modulo N), OLMoE's pathway shape (16 layers x 64 experts, each layer a softmax),
question texts of 12-20 words. Only the merge reads them: nothing here is a golden value."""
import argparse, hashlib, json, os
import numpy as np

M = (1 << 64) - 1


def stable_hash(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & M
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & M
    return h ^ (h >> 31)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--experts", type=int, default=64)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    words = ["river", "stone", "energy", "plant", "cell", "force", "light", "metal", "water", "heat", "sound", "animal",
             "planet", "moon", "earth", "gas", "liquid", "solid", "motion", "wave", "circuit", "magnet", "seed", "leaf"]
    tasks = ["sciq", "openbookqa", "arc", "piqa", "hellaswag", "winogrande", "csqa", "siqa"]
    per = [[] for _ in range(a.shards)]
    for i in range(a.records):
        task = tasks[i % len(tasks)]
        rid = f"{task}_{i}"
        q = " ".join(rng.choice(words, size=int(rng.integers(12, 21)))) + "?"
        per[stable_hash(rid) % a.shards].append((i, rid, task, q))
    source = {"path": "synthetic.zip", "kind": "archive", "sha256": hashlib.sha256(b"synthetic").hexdigest(), "records": a.records}
    for k, rows in enumerate(per):
        d = os.path.join(a.out, f"shard-{k}-of-{a.shards}")
        os.makedirs(d)
        logits = rng.standard_normal((len(rows), a.layers, a.experts)).astype(np.float32) * 2
        p = np.exp(logits - logits.max(axis=2, keepdims=True))
        p /= p.sum(axis=2, keepdims=True)
        np.save(os.path.join(d, "pathways.npy"), p.astype(np.float32))
        with open(os.path.join(d, "records.jsonl"), "w") as f:
            for (i, rid, task, q) in rows:
                prompt = f"Question: {q}\n A. one\n B. two\n C. three\n D. four\nAnswer:"
                f.write(json.dumps({"row": i, "id": rid, "task": task, "question": q, "gold": "B", "model_answer": "B",
                                    "correct": True, "source": "synthetic.zip:x.json", "prompt": prompt,
                                    "labels": ["A", "B", "C", "D"]}, sort_keys=True) + "\n")
        manifest = {"format": "c3po-shard", "format_version": 1, "created": "synthetic", "tool": "bench-shards",
                    "shard": {"index": k, "count": a.shards}, "kind": "archive", "sources": [source], "model": None,
                    "embedder": "sentence-transformers/all-MiniLM-L6-v2",
                    "build": {"factory": "Flat", "dedup": None, "include_incorrect": False, "skip_invalid": False,
                              "search_parameters": {}, "batch_size": 32},
                    "offered": a.records, "count": len(rows), "skipped_invalid": 0, "layers": a.layers, "experts": a.experts}
        with open(os.path.join(d, "shard.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
