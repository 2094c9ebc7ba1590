"""Suite-wide settings: hypothesis without wall-clock deadlines (the machine is shared)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ringmesh", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("ringmesh")


def pytest_sessionstart(session):
    """Refuse to test a stale compiled build: its extension modules would run the code of
    before the last edit (see ring.compiled)."""
    import pytest

    from ring.compiled import stale

    old = stale()
    if old:
        raise pytest.UsageError(
            f"compiled modules older than their sources: {', '.join(old)}; rebuild them "
            "(./dev build-fast) or remove them (python -m ring.compiled clean)")


def pytest_report_header(config):
    from ring.compiled import built

    n = len(built())
    return "ringmesh core: " + (f"{n} modules compiled with mypyc (ring.compiled)" if n
                                else "interpreted")
