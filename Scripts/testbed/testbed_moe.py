"""Helpers shared by the testbed scripts: tokenising, batching, and the last-token routing
override on transformers' OLMoE (OlmoeForCausalLM).

Override semantics (as in the C3PO reference code): in each chosen MoE layer, the router's
softmax distribution at the LAST prompt position is replaced by a custom distribution
(normalised to sum 1); top-k is then taken from it and renormalised only if
config.norm_topk_prob. All other positions keep the router's own distribution.
"""
import json
import types

import torch
import torch.nn.functional as F

LETTER_STRINGS = [" A", " B", " C", " D"]


def read_jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def letter_ids(tok):
    ids = []
    for s in LETTER_STRINGS:
        enc = tok.encode(s).ids
        assert len(enc) == 1, (s, enc)
        ids.append(enc[0])
    return ids


def label_ids(tok):
    """A function mapping a record's labels to their token ids (" " + label, exactly one
    token each, as the Swift runtime requires), cached per label."""
    cache = {}

    def ids(labels):
        out = []
        for s in labels:
            if s not in cache:
                enc = tok.encode(" " + s).ids
                assert len(enc) == 1, (s, enc)
                cache[s] = enc[0]
            out.append(cache[s])
        return out
    return ids


class RouteCtl:
    """Per-forward state read by the patched routers."""

    def __init__(self):
        self.last_flat = None   # (B,) flat indices (b*T + last_b) of the last prompt positions
        self.override = {}      # layer -> (B, E) distribution for the last positions (or None)
        self.override_rows = None  # optional (B,) bool: which samples get the override
        self.record = False
        self.rec_logits = {}    # layer -> (B, E) router logits at the last positions

    def clear(self):
        self.last_flat = None
        self.override = {}
        self.override_rows = None
        self.record = False
        self.rec_logits = {}


def _make_router_forward(layer_idx, ctl):
    def forward(self, hidden_states):
        hs = hidden_states.reshape(-1, self.hidden_dim)
        logits = F.linear(hs, self.weight)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float)
        if ctl.last_flat is not None:
            if ctl.record:
                ctl.rec_logits[layer_idx] = logits[ctl.last_flat]
            ov = ctl.override.get(layer_idx)
            if ov is not None:
                ov = ov.float()
                ov = ov / ov.sum(-1, keepdim=True)
                rows = ctl.last_flat
                if ctl.override_rows is not None:
                    rows = rows[ctl.override_rows]
                    ov = ov[ctl.override_rows]
                if rows.numel():
                    probs = probs.index_put((rows,), ov)
        top_v, top_i = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            top_v = top_v / top_v.sum(dim=-1, keepdim=True)
        return logits, top_v.to(logits.dtype), top_i
    return forward


def patch_routers(model, ctl):
    for l, layer in enumerate(model.model.layers):
        g = layer.mlp.gate
        g.forward = types.MethodType(_make_router_forward(l, ctl), g)


def encode_batch(tok, prompts, pad_id):
    encs = [tok.encode(p).ids for p in prompts]
    T = max(len(e) for e in encs)
    ids = torch.full((len(encs), T), pad_id, dtype=torch.long)
    for i, e in enumerate(encs):
        ids[i, :len(e)] = torch.tensor(e)
    last = torch.tensor([len(e) - 1 for e in encs])
    return ids, last


def last_logits(model, ctl, ids, last, override=None, override_rows=None, record=False):
    """Right-padded batch (causal, so padding after the last position is harmless).
    Returns the full-vocabulary logits at each sample's last prompt position."""
    B, T = ids.shape
    ctl.clear()
    ctl.last_flat = torch.arange(B, device=ids.device) * T + last.to(ids.device)
    ctl.override = override or {}
    ctl.override_rows = override_rows
    ctl.record = record
    h = model.model(input_ids=ids).last_hidden_state
    hl = h[torch.arange(B, device=ids.device), last.to(ids.device)]
    return model.lm_head(hl)
