"""Choosing torch's CPU threads: the usable CPUs less data-loader workers and other
load, at least one; an explicit number wins."""

import pytest

from rainbench import threads


@pytest.fixture
def machine(monkeypatch):
    """A machine of `cpus` usable CPUs under a one-minute load of `load`."""

    def make(cpus: int, load: float) -> None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
        monkeypatch.setattr(threads, "_load", lambda: load)

    return make


@pytest.mark.parametrize(
    ("cpus", "load", "workers", "expected"),
    [
        (2, 0.1, 0, 2),  # idle: every CPU
        (2, 5.0, 0, 1),  # the measured case: busy cores get one thread
        (16, 0.0, 4, 12),  # data-loader workers keep their cores
        (16, 6.2, 2, 10),
        (1, 0.0, 3, 1),
    ],
)
def test_threads_follow_free_cpus_and_workers(machine, cpus, load, workers, expected):
    machine(cpus, load)
    assert threads.choose_threads(workers) == expected


def test_an_explicit_count_wins_and_must_be_positive(machine, monkeypatch):
    machine(2, 9.0)
    assert threads.choose_threads(requested=4) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads() == 3 and threads.choose_threads(requested=2) == 2
    with pytest.raises(ValueError, match="at least 1"):
        threads.choose_threads(requested=0)


@pytest.mark.parametrize(("value", "expected"), [("0", 2), ("auto", 2), (" 3", 3), ("4,2", 4)])
def test_omp_num_threads_is_read_as_openmp_reads_it(machine, monkeypatch, value, expected):
    # OpenMP (and so torch) ignores 0 and text, and takes the first of a list: 0 raised
    # a ValueError whose traceback ended rainbench eval and train.
    machine(2, 0.1)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert threads.choose_threads() == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("max 100000\n", None), ("150000 100000\n", 2), ("garbage", None)]
)
def test_a_cgroup_quota_caps_the_cpus(tmp_path, monkeypatch, text, expected):
    quota = tmp_path / "cpu.max"
    quota.write_text(text)
    monkeypatch.setattr(threads, "_CGROUP_QUOTA", quota)
    assert threads._cgroup_quota() == expected
    assert threads.usable_cpus() >= 1
    if expected:
        assert threads.usable_cpus() <= expected


def test_torch_gets_the_chosen_count(machine):
    import torch

    before = torch.get_num_threads()
    machine(2, 5.0)
    try:
        assert threads.set_torch_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_torch_threads_are_the_chosen_count_inside_and_the_callers_after(machine):
    # A library call from a notebook: the session's count outlives it, an error's too.
    import torch

    before = torch.get_num_threads()
    machine(2, 5.0)
    torch.set_num_threads(3)
    try:
        with threads.torch_threads() as chosen:
            assert chosen == torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with pytest.raises(KeyError), threads.torch_threads(requested=2):
            assert torch.get_num_threads() == 2
            raise KeyError("the call fails")
        assert torch.get_num_threads() == 3
        with pytest.raises(ValueError, match="at least 1"), threads.torch_threads(requested=0):
            pass
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
