"""Where a process stands in a data-parallel run, and how global batches are shared out."""
import pytest

from lossnet.errors import LossnetError
from lossnet.tasks.data_parallel import DataParallel


def test_data_parallel_environment_and_sharding():
    dp = DataParallel.from_env({"RANK": "1", "WORLD_SIZE": "3", "LOCAL_RANK": "1"})
    assert (dp.rank, dp.world_size, dp.local_rank, dp.is_main, dp.enabled) == (1, 3, 1, False, True)
    keys = list(range(14))
    shards = [DataParallel(r, 3).shard(keys, 6, drop_last=True) for r in range(3)]
    assert shards[1] == [[2, 3], [8, 9]]
    # the ranks' shares put together are exactly the single-process batches
    whole = DataParallel().shard(keys, 6, drop_last=True)
    assert whole == [keys[0:6], keys[6:12]]
    assert [sum((s[i] for s in shards), []) for i in range(2)] == whole
    with pytest.raises(LossnetError, match="torchrun"):
        DataParallel.from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(LossnetError, match="multiple of 4"):
        DataParallel(0, 4).local_batch(10)
