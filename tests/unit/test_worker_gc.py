"""A worker's garbage collector: start-up objects frozen, the youngest generation collected less often."""
import gc

from services.common.worker import tune_garbage_collection


def test_start_up_objects_are_frozen_and_young_objects_collected_in_larger_rounds():
    threshold = gc.get_threshold()
    try:
        tune_garbage_collection()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == 10_000
        assert gc.isenabled(), "garbage in cycles is still freed"
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
