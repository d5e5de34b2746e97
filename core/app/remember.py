"""What a new memory sets off beyond its own rows: the checks of the layers above the memory
package, installed on the indexer the write runs with.

The memory package writes a memory, its index rows, history and changelog and knows nothing of
links or conflicts; with MNEMO_INFERRED_LINKS on, a new memory is linked to its most similar
memories (core/graph/waypoints.py), and with MNEMO_CONFLICTS_ON_WRITE on, it is compared with
its neighbours for contradictions (core/curation/on_write.py). Both run in the write's own
transaction, on the vector the indexer made before it opened.
"""

from __future__ import annotations

import functools

from core.curation.conflicts import VectorSpace
from core.curation.on_write import check_created
from core.embeddings.base import Embedder
from core.graph import waypoints
from core.kernel.config import Settings
from core.memory.indexing import Indexer
from core.retrieval.indexing import SearchIndexer


def indexer(embedder: Embedder | None, settings: Settings) -> Indexer:
    """An indexer for writes of new memories, with the checks the settings turn on."""
    index = SearchIndexer(embedder)
    if embedder is None:
        return index
    if settings.links.inferred:
        index.on_created.append(waypoints.linker(embedder.name, embedder.dims))
    if settings.conflicts.on_write:
        space = VectorSpace(embedder.name, embedder.dims, settings.conflicts.neighbours)
        index.on_created.append(
            functools.partial(check_created, space=space, foresight=index.foresight)
        )
    return index
