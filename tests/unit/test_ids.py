import os
import uuid

from arbstr.ids import new_request_id


def test_ids_are_uuid7_strings() -> None:
    value = new_request_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_request_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    # ordered except where the 16-bit counter low half wraps inside one millisecond
    inversions = sum(1 for a, b in zip(ids, ids[1:], strict=False) if b < a)
    assert inversions <= 2


def test_a_forked_child_does_not_repeat_the_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, "\n".join(new_request_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        child = set(f.read().split("\n"))
    parent = {new_request_id() for _ in range(100)}
    assert len(child) == 100
    assert not child & parent
    # different node bits: the last 12 hex digits minus the counter's 4
    assert {c[24:32] for c in child}.isdisjoint({p[24:32] for p in parent})
