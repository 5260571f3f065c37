"""The benchmark protocol: load accounting, interleaving order, spread, the refusal. Fake clocks and
load readers only: nothing here depends on how fast or how busy this machine is."""

from __future__ import annotations

import itertools
import statistics

import pytest

from harness import benchmarking as bm
from harness.errors import UsageError


class FakeMachine:
    """Each read advances the clock by `dt` s; this process tree burns `own` CPU s and the others
    `other` CPU s per read (per-read lists give a different load in each interval)."""

    def __init__(self, own=1.0, other=0.0, dt=1.0, busy_readable=True):
        self.own_steps = itertools.cycle(own if isinstance(own, list) else [own])
        self.other_steps = itertools.cycle(other if isinstance(other, list) else [other])
        self.dt, self.busy_readable = dt, busy_readable
        self.t = self.own_total = self.other_total = 0.0
        self.reads = 0

    def clock(self):
        # The meter reads clock, busy, own in that order: advance everything once per reading.
        if self.reads:
            self.t += self.dt
            self.own_total += next(self.own_steps)
            self.other_total += next(self.other_steps)
        self.reads += 1
        return self.t

    def busy(self):
        return self.own_total + self.other_total + 1000.0 if self.busy_readable else None  # since boot: an offset

    def own(self):
        return self.own_total

    def meter(self, cores=2):
        return bm.LoadMeter(busy=self.busy, own=self.own, clock=self.clock, cores=cores)


def test_other_processes_cpu_is_machine_busy_minus_own_tree():
    a = bm.CpuReading(wall_s=10.0, machine_busy_s=500.0, own_s=3.0)
    b = bm.CpuReading(wall_s=30.0, machine_busy_s=540.0, own_s=33.0)
    load = bm.Load.between(a, b, cores=2)
    assert (load.wall_s, load.own_cpu_s, load.other_cpu_s) == (20.0, 30.0, 10.0)
    assert load.fraction == pytest.approx(10.0 / (20.0 * 2))
    assert "10.0 CPU s in 20.0 s on 2 cores (25.0% of the machine)" in load.describe()


def test_tick_rounding_never_gives_negative_load():
    a = bm.CpuReading(0.0, 100.00, 0.0)
    b = bm.CpuReading(1.0, 100.99, 1.004)  # /proc/stat ticks are 10 ms; rusage is finer
    assert bm.Load.between(a, b, 2).other_cpu_s == 0.0


def test_meter_laps_and_total():
    machine = FakeMachine(own=1.5, other=[0.0, 0.2, 1.0])
    meter = machine.meter(cores=2).start()
    laps = [meter.lap() for _ in range(3)]
    assert [lap.other_cpu_s for lap in laps] == pytest.approx([0.0, 0.2, 1.0])
    assert [lap.fraction for lap in laps] == pytest.approx([0.0, 0.1, 0.5])
    assert all(lap.wall_s == 1.0 and lap.own_cpu_s == 1.5 for lap in laps)
    assert meter.laps == laps
    total = meter.total()  # one more interval (the cycle starts over: 0.0 others)
    assert total.wall_s == 4.0 and total.other_cpu_s == pytest.approx(1.2)
    assert total.fraction == pytest.approx(1.2 / 8.0)


def test_unreadable_machine_load_is_never_a_result():
    meter = FakeMachine(busy_readable=False).meter().start()
    load = meter.total()
    assert load.other_cpu_s is None and load.fraction is None
    assert "not measured" in load.describe()
    v = bm.judge(load)
    assert not v.result and not v.write and "not measured" in v.reason
    assert bm.judge(load, allow_load=True).write


@pytest.mark.parametrize("other, result", [(0.0, True), (0.1, True), (0.1001, False), (1.5, False)])
def test_judge_threshold(other, result):
    load = bm.Load(wall_s=1.0, cores=2, own_cpu_s=1.0, other_cpu_s=other)  # fraction = other / 2
    v = bm.judge(load, max_load=0.05)
    assert v.result is result and v.write is result
    assert v.to_dict()["load"]["other_cpu_s"] == other
    if result:
        assert v.reason == "" and v.label().startswith("Result: measured on a quiet machine")
    else:
        assert "above the 5% threshold" in v.reason
        assert "not a result" in v.label() and bm.QUIET_COMMAND in v.label()


def test_allow_load_writes_but_labels_it_not_a_result():
    load = bm.Load(wall_s=10.0, cores=2, own_cpu_s=10.0, other_cpu_s=8.0)
    v = bm.judge(load, max_load=0.05, allow_load=True)
    assert v.write and not v.result
    assert v.label().startswith("**Measured under load, not a result**") and "40.0% of the machine" in v.label()
    assert bm.Verdict(**v.to_dict()) == v  # round-trips through a report's JSON


def test_refusal_is_exit_3_and_says_why_and_how():
    v = bm.judge(bm.Load(10.0, 2, 10.0, 8.0))
    err = bm.refuse(v)
    assert isinstance(err, bm.NotKept) and err.exit_code == 3
    assert "not kept as a result" in str(err) and "40.0% of the machine" in str(err) and "--allow-load" in str(err)


@pytest.mark.parametrize("value", [-0.01, 1.5])
def test_max_load_option_is_checked(value):
    with pytest.raises(UsageError, match="--max-load"):
        bm.check_max_load(value)
    assert bm.check_max_load(0.2) == 0.2


def test_rotations_put_every_provider_in_every_position_equally_often():
    providers = ["a", "b", "c", "d"]
    orders = bm.rotations(providers, 12)
    assert orders[:4] == [list("abcd"), list("bcda"), list("cdab"), list("dabc")]
    assert orders[4:8] == orders[:4]
    for position in range(4):
        assert sorted(o[position] for o in orders) == sorted(providers * 3)
    assert all(sorted(o) == providers for o in orders)  # each repeat runs every provider once
    assert bm.rotations(["x", "y"], 4) == [["x", "y"], ["y", "x"], ["x", "y"], ["y", "x"]]  # alternating
    assert bm.rotations([], 2) == [[], []]


def test_spread_median_quantiles_and_range():
    s = bm.spread([5, 1, 4, 2, 3])
    assert (s.median, s.min, s.max, s.n) == (3, 1, 5, 5)
    assert (s.p20, s.p80) == pytest.approx((1.8, 4.2))  # inclusive quantiles
    assert s.cell(".1f") == "3.0 (1.0–5.0)"
    assert bm.spread([2.5]).to_dict() == {"median": 2.5, "p20": 2.5, "p80": 2.5, "min": 2.5, "max": 2.5, "n": 1}
    assert bm.spread([4, 1, 3, 2]).median == statistics.median([1, 2, 3, 4])
    with pytest.raises(ValueError):
        bm.spread([])


def test_ratios_pair_values_of_the_same_repeat():
    assert bm.ratios([2.0, 6.0, 3.0], [1.0, 3.0, 3.0]) == [2.0, 2.0, 1.0]
    with pytest.raises(ValueError):
        bm.ratios([1.0], [1.0, 2.0])


def test_within_is_inclusive_of_the_stated_range():
    before = bm.spread([0.9, 1.0, 1.2]).to_dict()
    assert bm.within(0.9, before) and bm.within(1.2, before) and bm.within(1.05, before)
    assert not bm.within(0.89, before) and not bm.within(1.21, before)


def test_command_line_spells_every_option_out():
    cmd = bm.command_line("python -m harness.train.bench", {"arch": "tiny", "source_len": 16, "providers": ["a", "b"],
                                                            "allow_load": True, "profile": False, "batch": None,
                                                            "note": "two words"})
    assert cmd == "python -m harness.train.bench --arch tiny --source-len 16 --providers a,b --allow-load --note 'two words'"


def test_provenance_records_commit_packages_device_and_command():
    record = bm.provenance("python -m x --y 1", packages=["pytest"], torch_threads=2)
    assert record["command"] == "python -m x --y 1"
    assert record["git_commit"] and record["device"] and record["cpu"] and record["created"]
    assert record["packages"]["pytest"] != "not installed" and "torch" in record["packages"]
    assert record["torch_threads"] == 2
    lines = bm.protocol_lines(bm.judge(bm.Load(1.0, 2, 1.0, 0.0)), record, "alternating repeats", 4)
    text = "\n".join(lines)
    assert "Result:" in text and "`python -m x --y 1`" in text and "4 repeats, alternating repeats" in text
    assert record["git_commit"] in text


def test_readers_on_this_machine_and_without_proc(monkeypatch):
    busy = bm.machine_busy_seconds()
    assert busy is None or busy >= 0  # None off Linux
    assert bm.own_cpu_seconds() >= 0

    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(bm, "open", no_proc, raising=False)
    assert bm.machine_busy_seconds() is None


def report(result: bool, commit: str, median: float, history=None) -> dict:
    """A previous report as the helpers read it: manifest, verdict, history."""
    return {"manifest": {"git_commit": commit, "created": f"t-{commit}"}, "verdict": {"result": result},
            **({"history": history} if history is not None else {}), "figures": {"r": bm.spread([median - 0.1, median, median + 0.1]).to_dict()}}


def test_rerun_check_inside_and_outside_the_previous_spread():
    previous = report(True, "abc", 1.0)
    now = {"r": bm.spread([1.05]).to_dict(), "s": bm.spread([3.0]).to_dict(), "gone": None}
    check = bm.rerun_check(previous, True, now, previous["figures"])
    assert (check["previous_commit"], check["previous_created"], check["previous_was_result"]) == ("abc", "t-abc", True)
    assert list(check["figures"]) == ["r"]  # only figures both reports state
    assert check["figures"]["r"] == {"now": 1.05, "previous": {"median": 1.0, "min": 0.9, "max": 1.1}, "within_previous_spread": True}
    outside = bm.rerun_check(previous, True, {"r": bm.spread([1.2]).to_dict()}, previous["figures"])
    assert outside["figures"]["r"]["within_previous_spread"] is False
    line = "\n".join(bm.rerun_line(outside, {"r": "the ratio"}))
    assert line.startswith("Rerun check against the previous report (commit `abc`, t-abc)")
    assert "the ratio 1.20 OUTSIDE 0.90–1.10" in line
    loaded = bm.rerun_check(report(False, "def", 1.0), True, now, previous["figures"])
    assert "itself not a result" in bm.rerun_line(loaded, {})[0] and "r 1.05 inside 0.90–1.10" in bm.rerun_line(loaded, {})[0]


def test_no_rerun_check_without_a_previous_report_of_the_same_settings():
    now = {"r": bm.spread([1.0]).to_dict()}
    assert bm.rerun_check(None, True, now, {}) is None
    assert bm.rerun_check(report(True, "abc", 1.0), False, now, now) is None
    assert bm.run_history(None, True, now) == [] and bm.run_history(report(True, "abc", 1.0), False, now) == []
    assert bm.rerun_line(None, {}) == []
    assert bm.rerun_line({"previous_commit": "abc", "previous_created": "t", "previous_was_result": True, "figures": {}}, {}) == []


def test_rerun_line_reads_the_older_ratios_key():
    """Training reports written before the generic helper stored the check under "ratios"."""
    old = {"previous_commit": "abc", "previous_created": "t", "previous_was_result": True,
           "ratios": {"x": {"now": 2.0, "previous": {"median": 2.0, "min": 1.5, "max": 2.5}, "within_previous_spread": True}}}
    assert bm.rerun_line(old, {"x": "ours vs theirs"}, ".1f")[0].endswith("ours vs theirs 2.0 inside 1.5–2.5.")


def test_history_keeps_only_quiet_runs_oldest_first():
    history: list = []
    runs = [(True, "a", 1.0), (False, "b", 5.0), (True, "c", 1.2), (True, "d", 1.1)]
    for result, commit, median in runs:  # each run's report carries the history its predecessor left
        previous = report(result, commit, median, history)
        history = bm.run_history(previous, True, previous["figures"])
    assert [h["commit"] for h in history] == ["a", "c", "d"]  # "b" was measured under load
    assert [h["figures"]["r"]["median"] for h in history] == pytest.approx([1.0, 1.2, 1.1])
    assert history[0] == {"commit": "a", "created": "t-a", "figures": {"r": {"median": 1.0, "min": 0.9, "max": pytest.approx(1.1)}}}
    assert bm.run_history(report(False, "e", 1.0, history), True, {"r": None}) == history  # a loaded run adds nothing


def test_read_previous(tmp_path):
    assert bm.read_previous(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert bm.read_previous(tmp_path / "bad.json") is None
    (tmp_path / "ok.json").write_text('{"verdict": {"result": true}}')
    assert bm.read_previous(tmp_path / "ok.json") == {"verdict": {"result": True}}


def test_reference_seconds_times_fixed_work_and_leaves_the_collector_as_it_was():
    import gc

    assert gc.isenabled()
    assert bm._reference_work() == bm._reference_work()  # the same work every time
    seconds = bm.reference_seconds(tries=2, rounds=1)
    assert 0 < seconds < 5 and gc.isenabled()
