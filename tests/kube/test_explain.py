from megagpu.kube import explain


def gw(work):
    return {
        "metadata": {"namespace": "ml", "name": "w"},
        "spec": {"workloadType": "training", "model": "m"},
        "status": {"phase": "Succeeded", "reward": -0.1, "durationSeconds": 50, "work": work},
    }


def test_explain_says_where_the_size_came_from():
    sized = explain.lines(gw({"amount": 2e6, "unit": "tokens", "source": "reported"}), [])
    assert "  size 2e+06 tokens (reported)" in sized
    unsized = explain.lines(gw({"source": "none"}), [])
    assert "  size unknown: its run time was not read as a speed" in unsized
    assert not any("size" in line for line in explain.lines(gw({"amount": "x"}), []))
