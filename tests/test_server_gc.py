"""`serve --gc-freeze-s`: long-lived objects are frozen out of the collector's sight (short
full collections with thousands of sessions), and frozen cyclic garbage is still freed by the
periodic full pass."""

from __future__ import annotations

import asyncio
import gc
import weakref


def test_frozen_cycles_survive_ordinary_collections_and_go_on_the_full_pass():
    from arlarena_envs.server.cli import _freeze_long_lived

    class Node:
        pass

    loop = asyncio.new_event_loop()
    try:
        _freeze_long_lived(loop, every_s=0.05, full_every_s=0.4)
        assert gc.get_freeze_count() > 0  # what existed at start-up is frozen at once
        node = Node()
        node.me = node  # a reference cycle: only the collector can free it
        ref = weakref.ref(node)
        loop.run_until_complete(asyncio.sleep(0.15))  # a tick freezes it
        del node
        gc.collect()
        assert ref() is not None  # frozen: ordinary collections do not see it
        loop.run_until_complete(asyncio.sleep(0.4))  # the full pass unfreezes and collects
        assert ref() is None
        assert gc.get_freeze_count() > 0  # and freezes again
    finally:
        loop.close()
        gc.unfreeze()
