"""Test-wide settings."""

import os

from hypothesis import HealthCheck, settings

# Generation speed depends on the machine's load; a slow draw is not a failure. Under CI
# (CI=true) examples are derandomised, so a red run can be replayed exactly.
settings.register_profile("graphc", suppress_health_check=[HealthCheck.too_slow],
                          derandomize=os.environ.get("CI") == "true", deadline=None)
settings.load_profile("graphc")
