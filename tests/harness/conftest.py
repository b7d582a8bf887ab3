"""One local Ray cluster (2 CPUs) for the whole test session: the sweep and tune tests join it (the engine never
starts a second one while Ray is initialised)."""

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
