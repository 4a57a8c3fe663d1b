# %% [markdown]
# # PyTorch interop: an aether model as a `torch.nn.Module`, and back
#
# Loads the safetensors export of an aether model (`Model.to_safetensors` or
# `aether convert M.rvne M.safetensors`) into `AetherHead`, an equivalent PyTorch
# module written from docs/model.md and the sparse pattern of DESIGN.md, checks that
# its logits agree with `aether.Model.forward`, fine-tunes it a few steps, writes the
# weights back as safetensors with the model description, and converts them to
# `.rvne` with `aether convert` (when the `aether` binary is found) so the node and
# the CLI run the fine-tuned model.
#
#     pip install torch      # optional dependency, not needed by aether or its tests
#     python examples/python/torch_interop.py [--model M.rvne] [--out DIR]

# %%
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import torch

import aether

# %% [markdown]
# ## safetensors without extra packages
# 8-byte little-endian header length, a JSON header (name → dtype, shape, offsets;
# `__metadata__` holds the aether model description under key `aether`), the data.

# %%
_DT = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header.pop("__metadata__")["aether"])
    data = raw[8 + n:]
    tensors = {}
    for name, t in header.items():
        lo, hi = t["data_offsets"]
        a = np.frombuffer(data[lo:hi], dtype=_DT[t["dtype"]]).reshape(t["shape"])
        tensors[name] = torch.from_numpy(a.astype(np.float32))
    return tensors, meta


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().cpu().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"aether": json.dumps(meta)}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# %% [markdown]
# ## The head in PyTorch (docs/model.md)

# %%
def sparse_masks(n, p):
    """Token mask [N, N] and landmark mask [N, blocks] of the AETHER pattern (DESIGN.md)."""
    w, bs, causal, log_stride = p["window"], p["block_size"], p["causal"], p["log_stride"]
    tok = torch.zeros(n, n, dtype=torch.bool)
    blocks = (n + bs - 1) // bs
    lm = torch.zeros(n, blocks, dtype=torch.bool)
    strides = []
    s = 1
    while s < n:
        strides.append(s)
        s *= 2
    for i in range(n):
        hi = i if causal else min(n - 1, i + w)
        tok[i, max(0, i - w):hi + 1] = True
        for g in p["global_tokens"]:
            if g < n and (g <= i or not causal):
                tok[i, g] = True
        if log_stride:
            for s in strides:
                if i >= s:
                    tok[i, i - s] = True
                if not causal and i + s < n:
                    tok[i, i + s] = True
        if not p["landmarks"]:
            continue
        cur = i // bs
        avail = (i + 1) // bs if causal else blocks
        if avail == 0:
            continue
        pivot = avail - 1 if causal else min(cur, blocks - 1)
        for b in range(max(pivot - 1, 0), min(pivot + 1, avail - 1) + 1):
            if causal or b != cur:
                lm[i, b] = True
        if log_stride:
            s = 1
            while s < blocks:
                if pivot >= s and (causal or pivot - s != cur):
                    lm[i, pivot - s] = True
                if not causal and pivot + s < blocks and pivot + s != cur:
                    lm[i, pivot + s] = True
                s *= 2
    return tok, lm


class AetherHead(torch.nn.Module):
    """The AETHER temporal head; parameters named as the docs/model.md tensors."""

    def __init__(self, tensors, meta):
        super().__init__()
        self.meta = meta
        self.dims, self.arch, self.pattern = meta["dims"], meta["architecture"], meta["pattern"]
        # Tensor names contain dots: keep them in a ParameterDict under escaped keys.
        self.params = torch.nn.ParameterDict(
            {k.replace(".", "__"): torch.nn.Parameter(v.clone()) for k, v in tensors.items()})

    def t(self, name):
        return self.params[name.replace(".", "__")]

    def has(self, name):
        return name.replace(".", "__") in self.params

    def state_tensors(self):
        return {k.replace("__", "."): v for k, v in self.params.items()}

    @staticmethod
    def ln(x, g, b):
        m = x.mean(-1, keepdim=True)
        v = ((x - m) ** 2).mean(-1, keepdim=True)
        return (x - m) / torch.sqrt(v + 1e-5) * g + b

    @staticmethod
    def gelu(z):
        return 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))

    def attention(self, q, k, v):
        d = self.dims
        n, hq, hkv, dh = q.shape[0], d["q_heads"], d["kv_heads"], d["head_dim"]
        q = q.view(n, hq, dh)
        k = k.view(n, hkv, dh).repeat_interleave(hq // hkv, dim=1)
        v = v.view(n, hkv, dh).repeat_interleave(hq // hkv, dim=1)
        if self.arch["attention"] == "dense":
            tok = torch.ones(n, n, dtype=torch.bool)
            if self.pattern["causal"]:
                tok = torch.tril(tok)
            keys, vals, mask = k, v, tok
        else:
            tok, lm = sparse_masks(n, self.pattern)
            bs = self.pattern["block_size"]
            blocks = lm.shape[1]
            lk = torch.stack([k[b * bs:min((b + 1) * bs, n)].mean(0) for b in range(blocks)])
            lv = torch.stack([v[b * bs:min((b + 1) * bs, n)].mean(0) for b in range(blocks)])
            keys, vals = torch.cat([k, lk]), torch.cat([v, lv])
            mask = torch.cat([tok, lm], dim=1)
        scores = torch.einsum("ihd,jhd->hij", q, keys) / math.sqrt(dh)
        scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.einsum("hij,jhd->ihd", torch.softmax(scores, dim=-1), vals)
        return out.reshape(n, hq * dh)

    def forward(self, u):  # u: (N, F) float32 -> logits (C,)
        a, t = self.arch, self.t
        if a["running_norm"]:
            u64 = u.double()
            cnt = torch.arange(1, u.shape[0] + 1, dtype=torch.float64)[:, None]
            m = u64.cumsum(0) / cnt
            var = ((u64 ** 2).cumsum(0) / cnt - m ** 2).clamp(min=0)
            u = ((u64 - m) / var.sqrt().clamp(min=1e-3)).float()
        if a["input_norm"]:
            u = (u - t("input.mean")) / t("input.std")
        x = u @ t("embed.w") + t("embed.b") if a["embed"] else u
        if a["positional"] == "sinusoidal":
            n, dm = x.shape
            pos = torch.arange(n, dtype=torch.float64)[:, None]
            c = torch.arange(dm, dtype=torch.float64)
            ang = pos / torch.pow(10000.0, (2 * (c // 2)) / dm)
            pe = torch.where(c % 2 == 0, torch.sin(ang), torch.cos(ang)).float()
            x = x + pe
        bias = a["biases"]
        for layer in range(self.dims["layers"]):
            L = f"layers.{layer}."
            h = self.ln(x, t(L + "ln1.g"), t(L + "ln1.b")) if a["pre_norm"] else x
            q, k, v = h @ t(L + "wq"), h @ t(L + "wk"), h @ t(L + "wv")
            if bias:
                q, k, v = q + t(L + "bq"), k + t(L + "bk"), v + t(L + "bv")
            o = self.attention(q, k, v) @ t(L + "wo")
            x = x + (o + t(L + "bo") if bias else o)
            if self.dims["mlp_hidden"] > 0:
                h2 = self.ln(x, t(L + "ln2.g"), t(L + "ln2.b")) if a["pre_norm"] else x
                x = x + self.gelu(h2 @ t(L + "mlp.w1") + t(L + "mlp.b1")) @ t(L + "mlp.w2") + t(L + "mlp.b2")
        if a["final_norm"]:
            x = self.ln(x, t("final_ln.g"), t("final_ln.b"))
        pooled = x.mean(0) if a["pooling"] == "mean" else x[-1]
        logits = pooled @ t("classifier.w")
        return logits + t("classifier.b") if bias else logits


# %% [markdown]
# ## Load, compare, fine-tune, convert back

# %%
def find_aether():
    for p in (os.environ.get("AETHER_BIN"), shutil.which("aether"),
              Path(__file__).resolve().parents[2] / "target" / "debug" / "aether",
              Path(__file__).resolve().parents[2] / "target" / "release" / "aether"):
        if p and Path(p).is_file():
            return Path(p)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, help="an aether .rvne model (default: train a small one)")
    ap.add_argument("--out", type=Path, default=Path("aether-torch"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ds = aether.simulate("gesture", recordings=4, seed=0)
    if args.model:
        model = aether.Model.load(args.model)
    else:
        model, _ = aether.train(ds, epochs=3, seed=0, window=64)
    st = args.out / "model.safetensors"
    model.to_safetensors(st)
    tensors, meta = read_safetensors(st)
    head = AetherHead(tensors, meta)

    x = ds.recordings[0][:128]
    with torch.no_grad():
        ours = head(torch.from_numpy(x)).numpy()
    ref = model.forward(x)
    err = np.abs(ours - ref).max()
    print(f"PyTorch logits {np.round(ours, 4)}\naether  logits {np.round(ref, 4)}\nmax |diff| {err:.2e}")
    assert err < 1e-3 * max(1.0, np.abs(ref).max()), "PyTorch and aether disagree"

    # Fine-tune a few steps in PyTorch (here: on the windows of the simulated data).
    X, y = aether.windows(ds, window=64, stride=64)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for step in range(5):
        i = step % len(X)
        loss = torch.nn.functional.cross_entropy(head(torch.from_numpy(X[i]))[None], torch.tensor([int(y[i])]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    tuned = args.out / "tuned.safetensors"
    write_safetensors(tuned, head.state_tensors(), meta)
    print("fine-tuned 5 steps, wrote", tuned)

    exe = find_aether()
    if exe is None:
        print("`aether` not found (set AETHER_BIN): convert with `aether convert tuned.safetensors tuned.rvne`")
        return
    rvne = args.out / "tuned.rvne"
    subprocess.run([str(exe), "convert", str(tuned), str(rvne)], check=True)
    back = aether.Model.load(rvne)
    with torch.no_grad():
        want = head(torch.from_numpy(x)).numpy()
    err = np.abs(back.forward(x) - want).max()
    print(f"aether convert -> {rvne}: logits agree with the fine-tuned PyTorch module (max |diff| {err:.2e})")
    assert err < 1e-3 * max(1.0, np.abs(want).max())


if __name__ == "__main__":
    main()
