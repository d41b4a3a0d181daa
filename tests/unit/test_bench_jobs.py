"""The benchmarks' timing helpers: the two sides alternate, and a table cell shows every run."""

from bench.jobs import alternate, runs


def test_alternate_interleaves_the_two_sides_and_keeps_every_run():
    order: list[str] = []

    def side(name: str, seconds: float):
        def timed() -> float:
            order.append(name)
            return seconds

        return timed

    ours, reference = alternate(side("ours", 1.0), side("ref", 2.0), repeat=3)
    assert order == ["ours", "ref"] * 3
    assert ours == [1.0] * 3 and reference == [2.0] * 3


def test_runs_reports_the_median_and_all_values():
    assert runs([3.0, 1.0, 2.0]) == "median 2.00 s (runs: 3.00, 1.00, 2.00)"
