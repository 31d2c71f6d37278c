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


def test_explain_shows_predictions_and_how_far_off_they_were():
    placed = gw({"source": "declared"})
    placed["status"].update(
        node="fast-0",
        decision={
            "mode": "exploit",
            "score": 10,
            "qValues": {"fast-0": 0.0},
            "alternatives": [
                {
                    "node": "slow-0",
                    "score": 0,
                    "qValue": -1.0,
                    "predictedSeconds": 100.0,
                    "predictedSigma": 0.1,
                },
                {"node": "new-0", "score": 0, "qValue": -2.0, "predictedSeconds": None},
            ],
            "predictedSeconds": 25.0,
            "predictedSigma": 0.095,
            "reason": "r",
        },
    )
    text = explain.lines(placed, [])
    assert "  chosen   fast-0: score 10, Q +0.000, predicted 25 s (+-10%)" in text
    assert "  instead  slow-0: score 0, Q -1.000, predicted 100 s (+-11%)" in text
    assert "  instead  new-0: score 0, Q -2.000" in text
    assert "outcome: 50 s (ran 2.00x the predicted 25 s), reward -0.100" in text
