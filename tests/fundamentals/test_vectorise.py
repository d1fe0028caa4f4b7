import numpy as np
import pandas as pd
import pytest

from fundamentals import vectorise as vz


@pytest.mark.parametrize("seed", [0, 1])
def test_all_versions_identical(seed):
    events = vz.make_events(3000, seed=seed)
    ref = vz.features_vectorised(events)
    for name, fn in vz.VERSIONS.items():
        pd.testing.assert_frame_equal(fn(events), ref, obj=name)


def test_hand_checked_example():
    # user 7: 0s, 10 min, 50 min (gap 40 min > 30: new session), 65 min; user 3: one event; rows shuffled
    events = pd.DataFrame({"user_id": [7, 3, 7, 7, 7], "ts": [3000, 500, 0, 600, 3900]})
    out = vz.features_vectorised(events)
    # row order kept: ts 3000 -> session 1, window (-600, 3000] holds 0, 600, 3000 = 3
    assert out["session_id"].tolist() == [1, 0, 0, 0, 1]
    assert out["events_1h"].tolist() == [3, 1, 1, 2, 3]  # ts 3900: (300, 3900] holds 600, 3000, 3900
    pd.testing.assert_frame_equal(vz.features_loop(events), out)
    pd.testing.assert_frame_equal(vz.features_apply(events), out)


def test_window_boundary_is_exclusive_on_the_left():
    events = pd.DataFrame({"user_id": [1, 1], "ts": [0, vz.WINDOW_S]})  # exactly 1 h apart: not in the window
    assert vz.features_vectorised(events)["events_1h"].tolist() == [1, 1]
    assert vz.features_iterrows(events)["events_1h"].tolist() == [1, 1]


def test_duplicate_timestamps_counted_in_order():
    events = pd.DataFrame({"user_id": [5, 5, 5], "ts": [100, 100, 100]})
    for fn in vz.VERSIONS.values():
        assert fn(events)["events_1h"].tolist() == [1, 2, 3]


def test_output_keeps_input_index_and_columns():
    events = vz.make_events(500, seed=2)
    events.index = np.arange(1000, 1500)
    out = vz.features_vectorised(events)
    assert out.index.equals(events.index)
    assert list(out.columns) == ["user_id", "ts", "session_id", "events_1h"]


def test_demo_prints_table(capsys):
    assert vz.demo(["--rows", "2000", "20000", "--max-rows", "2000"]) == 0
    out = capsys.readouterr().out
    assert "iterrows" in out and "skipped" in out and "yes" in out and "NO" not in out
