from rainbench.parallel import WorkerPool, distribute


def _square(x: int) -> int:
    return x * x


def test_every_unit_runs_exactly_once_in_and_out_of_process():
    units = list(range(101))  # more than the in-flight bound
    for workers in (1, 2):
        assert sorted(distribute(_square, units, workers)) == [x * x for x in units]


def test_one_pool_serves_several_phases():
    with WorkerPool(2) as pool:
        assert sorted(pool.map_unordered(_square, range(10))) == [x * x for x in range(10)]
        assert sorted(pool.map_unordered(_square, range(3))) == [0, 1, 4]


def test_ordered_results_keep_the_units_order():
    with WorkerPool(2) as pool:
        assert list(pool.map_ordered(_square, range(50))) == [x * x for x in range(50)]
