"""How eval on a Ray cluster says a failure of its first question to the actors."""

import pytest

from rainbench.cluster import ClusterError
from rainbench.errors import RainbenchError
from rainbench.leaderboard.eval import EvalError, _ClusterSource


class _Failing:
    def __init__(self, error: Exception):
        self.error = error

    def ask(self, method, argument):
        raise self.error


def test_a_lost_cluster_is_said_as_the_driver_found_it_not_as_the_workers_failure():
    lost = ClusterError("lost the Ray cluster at auto: its head no longer answers")
    with pytest.raises(ClusterError) as raised:
        _ClusterSource(_Failing(lost))
    assert raised.value is lost
    # What a worker lacks (a plug-in, a checkpoint) is said as the workers'.
    with pytest.raises(EvalError, match=r"^on the Ray cluster's workers: no plug-in x$"):
        _ClusterSource(_Failing(RainbenchError("no plug-in x")))
