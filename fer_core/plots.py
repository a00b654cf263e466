"""Figures as PNG bytes: learning curves and confusion matrices (logged with every training run), and montages
of the faces a model misreads (`fer evaluate --misread`)."""

from __future__ import annotations

import io

import numpy as np

from fer_core.labels import EMOTIONS


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def learning_curves(history: dict[str, list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("categorical_accuracy", "loss"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ax.plot(np.arange(1, len(history[prefix + key]) + 1), history[prefix + key], style,
                        label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    return _png(fig)


def confusion(confusion: list[list[int]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def montage(faces: np.ndarray, captions: list[str], columns: int = 8, scale: int = 2) -> bytes:
    """Gray faces in rows of `columns`, each enlarged `scale` times (pixels repeated) with its caption in red."""
    import cv2

    side = faces.shape[1] * scale
    tiles = []
    for face, caption in zip(faces, captions, strict=True):
        tile = cv2.cvtColor(cv2.resize(face, (side, side), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
        cv2.putText(tile, caption, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1)
        tiles.append(tile)
    tiles += [np.zeros((side, side, 3), np.uint8)] * (-len(tiles) % columns)
    grid = np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
    ok, png = cv2.imencode(".png", grid, [cv2.IMWRITE_PNG_COMPRESSION, 9])  # a quarter of the default's size
    if not ok:
        raise RuntimeError("OpenCV could not encode the montage as PNG")
    return png.tobytes()


def misread(faces: np.ndarray, labels: np.ndarray, probs: np.ndarray, limit: int = 40) -> dict[str, tuple[bytes, int]]:
    """For each emotion with misread faces: a montage of up to `limit` of them, in the set's order, each captioned
    with the answer given and its probability; and how many it misread in all. Figures say how often a model is
    wrong; these say why (a turned head, a hand, a box that missed the face, a label a person would dispute)."""
    answer = probs.argmax(1)
    out = {}
    for label, name in enumerate(EMOTIONS):
        wrong = np.flatnonzero((labels == label) & (answer != label))
        if len(wrong):
            shown = wrong[:limit]
            out[name] = (montage(faces[shown], [f"{EMOTIONS[answer[i]][:4]} {probs[i].max():.2f}" for i in shown]),
                         len(wrong))
    return out
