"""The seven emotion labels, defined once, in FER2013's (and ExpW's) own order."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}
# Common spellings found in folder datasets (e.g. "fearful", "surprised").
_ALIASES = {"anger": 0, "disgusted": 1, "fearful": 2, "afraid": 2, "happiness": 3, "sadness": 4,
            "surprised": 5, "calm": 6}


def label_index(name: str | int) -> int:
    """Map an emotion name (or its index as text) to its index; raise ValueError if unknown."""
    if isinstance(name, int):
        if 0 <= name < NUM_CLASSES:
            return name
        raise ValueError(f"label {name} is outside 0-{NUM_CLASSES - 1}")
    key = str(name).strip().lower()
    if key.isdigit():
        return label_index(int(key))
    if key in INDEX:
        return INDEX[key]
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTIONS)}")
