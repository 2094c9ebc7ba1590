"""The collector settings of a routing process, checked in a process of their own (they are
the whole process's: the test process keeps its defaults)."""

import subprocess
import sys
from pathlib import Path

from ring.collector import MIDDLE_THRESHOLD, OLD_THRESHOLD, YOUNG_THRESHOLD


def test_tuning_freezes_start_up_objects_and_collects_less_often():
    code = ("import gc\nfrom ring.collector import tune_for_routing\nbefore = gc.get_freeze_count()\n"
            "tune_for_routing()\nprint(before, gc.get_freeze_count(), *gc.get_threshold())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    before, frozen, *thresholds = map(int, out.stdout.split())
    assert before == 0 and frozen > 1000  # what imports made is out of the collector's sight
    assert thresholds == [YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD] and YOUNG_THRESHOLD > 700
