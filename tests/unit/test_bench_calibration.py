"""The machine's speed recorded with every bench run."""

from __future__ import annotations

import math

from bench.calibration import MachineSpeed, machine_speed


def test_every_figure_is_measured_and_shown() -> None:
    speed = machine_speed(trips=200)
    figures = speed.to_json()
    assert set(figures) == set(MachineSpeed.__dataclass_fields__)
    assert all(math.isfinite(value) and value > 0 for value in figures.values())
    # One thread of this process waited through each round trip: its CPU fits in the time.
    assert speed.process_round_trip_cpu_us <= speed.process_round_trip_us * 1.05
    shown = speed.describe()
    assert f"{speed.process_round_trip_us:.1f} µs" in shown
    assert f"{speed.thread_round_trip_cpu_us:.1f} µs CPU" in shown
