"""The bus's partitioner (services/common/bus.Murmur2Partitioner) puts every key where aiokafka's
DefaultPartitioner, and so any Kafka client, puts it: a key keeps its partition whoever publishes it."""
import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from services.common.bus import Murmur2Partitioner, murmur2


def test_murmur2_is_kafkas_for_keys_of_every_length_and_byte():
    rng = random.Random(4)
    keys = [bytes(rng.getrandbits(8) for _ in range(length)) for length in range(130) for _ in range(8)]
    keys += [b"", b"\x00", b"\xff" * 7, "org-1:Events:réunion".encode(), b"org-1234:Events:" + b"a" * 32]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]


def test_a_keyed_record_goes_where_the_default_partitioner_puts_it_a_keyless_one_anywhere_available():
    ours, theirs = Murmur2Partitioner(), DefaultPartitioner()
    for count in (1, 3, 12, 50):
        partitions = list(range(count))
        for n in range(200):
            key = f"org-{n}:Events:{n * 7919}".encode()
            assert ours(key, partitions, partitions) == theirs(key, partitions, partitions)
    assert {ours(None, [0, 1, 2, 3], [2, 3]) for _ in range(50)} == {2, 3}
    assert ours(None, [0, 1], []) in (0, 1)
