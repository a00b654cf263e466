"""fer_core.card's description of the machine, which the card and the benchmarks carry beside their figures."""

import os

from fer_core import card


def test_hardware_names_the_cores_vector_units_and_cache():
    text = card.hardware()
    assert f"{os.cpu_count()} cores" in text and ("no GPU" in text or "GPU " in text)
    with open("/proc/cpuinfo") as f:
        flags = set(next(line.split(":", 1)[1].split() for line in f if line.startswith("flags")))
    assert ("AVX-512" in text) == ("avx512f" in flags)
    assert ("AMX" in text) == ("amx_tile" in flags and bool({"avx512f", "avx2"} & flags))


def test_last_level_cache_is_the_highest_levels_size(tmp_path):
    for name, level, size in (("index0", 1, "48K"), ("index2", 2, "2048K"), ("index3", 3, "491520K")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "level").write_text(f"{level}\n")
        (tmp_path / name / "size").write_text(f"{size}\n")
    assert card.last_level_cache(tmp_path) == "480 MiB"
    (tmp_path / "index3" / "size").write_text("unknown\n")  # a level that does not say is left out
    assert card.last_level_cache(tmp_path) == "2 MiB"
    assert card.last_level_cache(tmp_path / "none") == ""
