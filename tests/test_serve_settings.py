"""ServeSettings (``serving/app.py``): the batching mode and its queue are validated once, with the other fields,
every problem named in one error; no Ray needed."""

import pytest

from polyglot_lion.serving.app import ServeSettings


def test_defaults_batch_continuously():
    s = ServeSettings.from_args({})
    assert (s.batching, s.max_batch_size, s.max_queue, s.stop_at_eos, s.stop_on_loop) == ("continuous", 16, 64,
                                                                                          True, True)
    assert ServeSettings.from_args({"batching": "request", "max_queue": 0}).batching == "request"


def test_bad_batching_settings_are_named_together():
    with pytest.raises(ValueError) as e:
        ServeSettings.from_args({"batching": "dynamic", "max_queue": -1, "max_batch_size": 0})
    message = str(e.value)
    assert "batching must be one of ['continuous', 'request'] (is 'dynamic')" in message
    assert "max_queue must be >= 0 (is -1)" in message and "max_batch_size must be >= 1 (is 0)" in message
