"""Small scenarios for tests: a few dozen nodes, minutes of simulated time, seconds of CPU."""

from __future__ import annotations

from typing import Any

from simulations import scenario as sc


def small_scenario(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "test-small",
        "seed": 5,
        "warmup": 30.0,
        "duration": 120.0,
        "plots": False,
        "ring": {"nodes": 40, "build": "joins", "join_window": 20.0, "ids": "hash",
                 "config": {"stabilize_interval": 3.0, "fix_fingers_interval": 2.0,
                            "check_predecessor_interval": 3.0, "rpc_timeout": 0.6,
                            "lookup_timeout": 3.0, "ack_timeout": 0.6,
                            "custody_timeout": 4.0}},
        "latency": {"model": "uniform", "lo_ms": 5.0, "hi_ms": 60.0, "loss": 0.01},
        "churn": {"model": "rate", "join_rate": 0.05, "fail_rate": 0.05},
        "events": [{"at": 60.0, "kind": "fail", "fraction": 0.2}],
        "workload": [{"kind": "lookup", "rate": 2.0, "deadline": 20.0},
                     {"kind": "stanza", "rate": 2.0, "keys": "zipf", "deadline": 20.0},
                     {"kind": "probe", "rate": 1.0, "deadline": 20.0}],
        "observers": {"ring_every": 20.0, "finger_sample": 20},
    }
    for k, v in over.items():
        sc.set_path(raw, k, v)
    return sc.resolve(raw)
