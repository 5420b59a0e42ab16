"""One local Ray instance for every test of this package that runs on Ray in this process (starting one costs
seconds); it is shut down when the package's tests end, so the rest of the suite runs without it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def ray_instance():
    ray = pytest.importorskip("ray", reason="the Ray executor needs the optional extra: pip install 'rowloom[ray]'")
    from rowloom.engine.distributed.ray_executor import start_local_ray

    start_local_ray(ray, num_cpus=2)  # as rowloom starts one without --ray-address
    yield
    ray.shutdown()
