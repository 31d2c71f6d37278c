import gc

from megagpu.tui import idle_gc


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_full_collections_wait_for_a_pause_in_the_keys_and_thresholds_come_back():
    before = gc.get_threshold()
    clock = Clock()
    collector = idle_gc.IdleCollector(clock)
    collector.start()
    try:
        assert gc.get_threshold() == (before[0], before[1], idle_gc.NEVER)
        for _ in range(before[2] + 1):
            gc.collect(1)  # each counts towards a full collection
        collector.key()
        assert not collector.tick()  # a key just came
        clock.now += idle_gc.IDLE_S
        assert collector.tick()  # idle and due: collected
        assert gc.get_count()[2] == 0
        assert not collector.tick()  # nothing due any more
    finally:
        collector.stop()
    assert gc.get_threshold() == before


def test_nothing_happens_before_start():
    assert not idle_gc.IdleCollector(Clock()).tick()
