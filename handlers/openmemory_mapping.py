"""OpenMemory v1.2's shapes <-> Mnemo's: what POST /memory/add, POST /memory/query, GET
/memory/{id}, GET /memory/all, GET /users/{user_id}/memories and GET /sectors answer, made from
what core returns. No SQL, no I/O: which sector a memory is in, and the reads by sector, are
core/memory/openmemory.py's.

What maps to what:
  * `salience` is the memory's importance; timestamps are epoch milliseconds, as OpenMemory's;
    `last_seen_at` is the last access, else the creation;
  * `decay_lambda` is the daily rate of Mnemo's recency decay (ln 2 /
    MNEMO_SEARCH_HALF_LIFE_DAYS), one for every sector;
  * `version` counts the memory's edits from 1;
  * POST /memory/add saves a note (OpenMemory's add has no type); tag it `procedural` (say) to
    file it there; filters.sector on /memory/query keeps the matches of that sector.
Mnemo lower-cases tags, which OpenMemory does not.
"""

from __future__ import annotations

import math

from core.kernel.ids import parse_time
from core.memory.models import (
    MemoryRecord,
    SaveRecord,
    SectorCountRecord,
    SectorMemoryRecord,
)
from core.memory.openmemory import sector_of
from core.retrieval.models import SearchHitRecord
from handlers.openmemory_models import OMAdded, OMItem, OMMatch, OMMemory, OMSector, OMSectorStat

# OpenMemory's own description of its sectors (its SDK ships the same table), with the decay
# rate Mnemo applies: one recency half-life for all (see decay_lambda).
SECTOR_INFO = {
    "episodic": ("Event memories - temporal data", "Mnemo: journal entries"),
    "semantic": ("Facts & preferences - factual data", "Mnemo: notes and facts"),
    "procedural": ("Habits, triggers - action patterns", "Mnemo: tag 'procedural'"),
    "emotional": ("Sentiment states - tone analysis", "Mnemo: tag 'emotional'"),
    "reflective": ("Meta memory & logs - audit trail", "Mnemo: tag 'reflective'"),
}


def decay_lambda(half_life_days: float) -> float:
    return math.log(2) / half_life_days if half_life_days > 0 else 0.0


def added(memory: SaveRecord) -> OMAdded:
    """POST /memory/add's answer, OpenMemory's fields only. A write the write gate held for
    review has no type or tags yet: its id is the quarantine id (GET /v1/quarantine/{id})."""
    if memory["state"] == "quarantined":
        sector = sector_of("note", [])
    else:
        sector = sector_of(memory["type"], memory["tags"])
    return {"id": memory["id"], "primary_sector": sector, "sectors": [sector], "chunks": 1}


def match(hit: SearchHitRecord) -> OMMatch:
    """One of POST /memory/query's matches, from a Mnemo search hit."""
    memory = hit["memory"]
    sector = sector_of(memory["type"], memory["tags"])
    return {
        "id": memory["id"],
        "content": memory["content"],
        "score": hit["score"],
        "sectors": [sector],
        "primary_sector": sector,
        "path": [memory["id"]],
        "salience": memory["importance"],
        "last_seen_at": _ms(memory["last_accessed_at"] or memory["created_at"]),
    }


def memory(found: MemoryRecord, rate: float) -> OMMemory:
    """GET /memory/{id}'s answer."""
    sector = sector_of(found["type"], found["tags"])
    return {
        "id": found["id"],
        "content": found["content"],
        "primary_sector": sector,
        "sectors": [sector],
        "tags": found["tags"],
        "metadata": found["metadata"],
        "created_at": _ms(found["created_at"]),
        "updated_at": _ms(found["updated_at"]),
        "last_seen_at": _ms(found["last_accessed_at"] or found["created_at"]),
        "salience": found["importance"],
        "decay_lambda": rate,
        "user_id": found["user_id"],
    }


def item(found: SectorMemoryRecord, rate: float) -> OMItem:
    """One of GET /memory/all's and GET /users/{user_id}/memories' items."""
    return {
        "id": found["id"],
        "content": found["content"],
        "tags": found["tags"],
        "metadata": found["metadata"],
        "created_at": found["created_at"],
        "updated_at": found["updated_at"],
        "last_seen_at": found["last_accessed_at"] or found["created_at"],
        "salience": found["importance"],
        "decay_lambda": rate,
        "primary_sector": found["sector"],
        "version": 1 + found["edits"],
    }


def sectors(rate: float) -> dict[str, OMSector]:
    """GET /sectors' `sectors`."""
    return {
        name: {
            "name": name,
            "description": description,
            "model": model,
            "decay_lambda": rate,
            "table_suffix": f"_{name}",
        }
        for name, (description, model) in SECTOR_INFO.items()
    }


def stat(counted: SectorCountRecord) -> OMSectorStat:
    """One of GET /sectors' `stats`."""
    return {
        "sector": counted["sector"],
        "count": counted["count"],
        "avg_salience": counted["mean_importance"],
    }


def _ms(value: str) -> int:
    """Epoch ms from the ISO text a memory record carries."""
    return parse_time(value)
