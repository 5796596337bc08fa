"""Publishing (publish.py): what this process sends is the same on every try."""

from __future__ import annotations

import gzip
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from paitasks.publish import _compressed


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=1 << 16))
def test_a_layer_is_compressed_the_same_way_every_time(content: bytes) -> None:
    """Its digest, then, is the same on a retry, on another run, on another day."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "layer.tar"
        path.write_bytes(content)
        first = _compressed(path)
        assert _compressed(path) == first
        assert gzip.decompress(first) == content
        assert first[4:8] == b"\0\0\0\0"  # no time in the header
