"""Suite-wide settings: hypothesis without wall-clock deadlines (the machine is shared)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ringmesh", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("ringmesh")
