# %% [markdown]
# # aether in Python: simulate, train, evaluate, plot, stream
#
# A notebook-style script (cells marked `# %%`, runs as is with `python`): it trains a
# temporal head on a simulated gesture dataset, scores it on held-out rooms and
# subjects, plots the confusion matrix to a PNG with matplotlib, and streams one
# recording frame by frame as a node would.
#
#     python examples/python/train_and_stream.py [--quick] [--out DIR]
#
# `--quick` uses a small dataset and few epochs (what CI runs, about a minute).

# %%
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np

import aether

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--quick", action="store_true", help="small data, few epochs")
parser.add_argument("--out", type=Path, default=Path("aether-example"), help="output folder")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
per_class, epochs = (10, 40) if args.quick else (None, None)  # None: the CLI's defaults

# %% [markdown]
# ## Data: the physical CSI simulator
# Seed 0 for training, seed 1 for testing: other rooms and subjects (docs/simulator.md).

# %%
train_ds = aether.simulate("gesture", recordings=per_class, seed=0)
test_ds = aether.simulate("gesture", recordings=per_class, seed=1)
print(train_ds)
print("classes:", train_ds.classes, "| features:", train_ds.n_features)
X, y = aether.windows(train_ds, window=64, stride=32)
print(f"as fixed windows: X {X.shape} float32, y {y.shape}")

# %% [markdown]
# ## Train — exactly `aether train` (same pipeline, same defaults)

# %%
t0 = time.time()
model, report = aether.train(train_ds, epochs=epochs, seed=0)
print(f"trained {report['epochs_run']} epochs in {time.time() - t0:.1f} s; "
      f"window {report['window']}, stride {report['stride']}")
if report["validation"]:
    print(f"validation accuracy per recording: {report['validation']['accuracy']:.3f}")
model.save(args.out / "gesture.rvne")
print(model, "->", args.out / "gesture.rvne")

# %% [markdown]
# ## Evaluate on held-out data — exactly `aether eval --json`

# %%
ev = aether.evaluate(model, test_ds)
print(f"held-out accuracy per recording {ev['accuracy']:.3f}, macro-F1 {ev['macro_f1']:.3f}")
cm = np.array(ev["confusion"])  # rows: truth, columns: prediction

fig, ax = plt.subplots(figsize=(4.5, 4))
ax.imshow(cm, cmap="Blues")
ax.set_xticks(range(len(ev["classes"])), ev["classes"], rotation=45)
ax.set_yticks(range(len(ev["classes"])), ev["classes"])
ax.set_xlabel("predicted")
ax.set_ylabel("true")
for i in range(cm.shape[0]):
    for j in range(cm.shape[1]):
        ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black")
ax.set_title(f"held-out recordings (accuracy {ev['accuracy']:.2f})")
fig.tight_layout()
fig.savefig(args.out / "confusion.png", dpi=120)
print("wrote", args.out / "confusion.png")

# %% [markdown]
# ## Stream a recording frame by frame
# `model.stream(horizon=model.default_horizon)` is the stream `aether classify --stream`
# and `aether serve` run; `model.stream()` is one exact stream from the first frame.

# %%
frames, label = test_ds[0]
stream = model.stream(horizon=model.default_horizon)
logits = stream.push_many(frames)  # (T, C): the logits after every frame
z = np.exp(logits - logits.max(axis=1, keepdims=True))
probs = z / z.sum(axis=1, keepdims=True)
print(f"streamed {stream.position} frames of a `{test_ds.classes[label]}` recording; "
      f"last output from {stream.context} frames: {model.classes[int(np.argmax(probs[-1]))]}")

exact = model.stream()
last = None
for f in frames[:100]:
    last = exact.push(f)
np.testing.assert_allclose(last, model.forward(frames[:100]), atol=1e-5)
print("exact stream after 100 frames == forward over them (to float rounding)")

fig, ax = plt.subplots(figsize=(6, 3))
for c, name in enumerate(model.classes):
    ax.plot(probs[:, c], label=name)
ax.set_xlabel("frame")
ax.set_ylabel("probability")
ax.set_title(f"streaming a `{test_ds.classes[label]}` recording")
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig(args.out / "stream.png", dpi=120)
print("wrote", args.out / "stream.png")

# %% [markdown]
# ## Export: safetensors for PyTorch (examples/python/torch_interop.py), v2 for the node

# %%
model.to_safetensors(args.out / "gesture.safetensors")
reloaded = aether.Model.load(args.out / "gesture.rvne")
assert np.array_equal(reloaded.forward(frames), model.forward(frames))
print("wrote", args.out / "gesture.safetensors", "| reloaded .rvne gives identical logits")
