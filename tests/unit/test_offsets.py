from consumer.offsets import PartitionOffsets


def test_commits_only_past_a_gap_free_prefix() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12, 13):
        offsets.start(offset)
    offsets.finish(12)
    offsets.finish(11)
    assert offsets.to_commit() is None  # 10 is still running
    offsets.finish(10)
    assert offsets.to_commit() == 13  # 10, 11, 12 done; 13 is not
    offsets.mark_committed(13)
    assert offsets.to_commit() is None
    offsets.finish(13)
    assert offsets.to_commit() == 14
    assert offsets.in_flight == 0


def test_gaps_in_offsets_do_not_block_commits() -> None:
    # Transaction markers and compaction leave holes; only started offsets count.
    offsets = PartitionOffsets()
    offsets.start(5)
    offsets.start(9)
    offsets.finish(9)
    offsets.finish(5)
    assert offsets.to_commit() == 10


def test_an_offset_started_twice_is_done_once_both_copies_finish() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 11, 12):
        offsets.start(offset)
    offsets.finish(11)
    offsets.finish(11)
    offsets.finish(10)
    assert offsets.to_commit() == 12  # both copies of 11 done
    offsets.finish(12)
    assert offsets.to_commit() == 13
    assert offsets.in_flight == 0
