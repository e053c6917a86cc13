import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One small local Ray instance for the whole test session (ray.init costs ~10 s here)."""
    import ray

    from polyglot_lion.runtime import init_ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    started = init_ray(num_cpus=2, object_store_mb=256, quiet=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()
