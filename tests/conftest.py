import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(min(2, os.cpu_count() or 1))
settings.register_profile("default", deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """``random_checkpoint(name)``: the path of a checkpoint of ``name``'s authors' module with
    random weights (seed 0), saved in their layout once a session."""
    made: dict = {}

    def make(name: str) -> str:
        if name not in made:
            import warnings

            from reference_vocoders import checkpoint_of, randomise, reference

            path = tmp_path_factory.mktemp(name) / "g.pt"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the authors' weight_norm, deprecated by torch
                torch.save(checkpoint_of(name, randomise(reference(name), seed=0)), path)
            made[name] = str(path)
        return made[name]

    return make


@pytest.fixture(scope="session")
def melgan_weights(random_checkpoint):
    return random_checkpoint("melgan")
