"""The field mapping of calendar_sync, one import for the engine and the adapters.

Each side keeps both of its directions side by side in its own module:
- mapping_crm: CRM event records (the field names are listed there) <-> canonical
- mapping_google: Google Calendar v3 events <-> canonical
- mapping_graph: Microsoft Graph events <-> canonical (with mapping_graph_zones for Windows time zone
  names and mapping_graph_recurrence for patternedRecurrence <-> RRULE)
- mapping_common: the result type (`Mapped`), `InvalidEvent`, and the rules for times and bad input
  that every side shares.

Reading functions return `Mapped(event, unmapped, problems)`; `unmapped` names what the other side
cannot hold, `problems` what was wrong but recovered. What cannot be mapped at all raises
`InvalidEvent` (a PermanentError: the change is dead-lettered with the reason). `fit_google` and
`fit_graph` give the event as that provider holds it, with the cuts reported; the writing functions
apply them.
"""
from services.calendar_sync.mapping_common import InvalidEvent, Mapped, ProviderLimits
from services.calendar_sync.mapping_crm import (
    canonical_to_crm,
    changed_crm_fields,
    crm_occurrence,
    crm_to_canonical,
)
from services.calendar_sync.mapping_google import (
    GOOGLE_LIMITS,
    canonical_to_google,
    fit_google,
    google_original_start,
    google_to_canonical,
)
from services.calendar_sync.mapping_graph import (
    GRAPH_LIMITS,
    canonical_to_graph,
    fit_graph,
    graph_original_start,
    graph_to_canonical,
)
from services.calendar_sync.mapping_graph_series import cancelled_occurrences

__all__ = [
    "GOOGLE_LIMITS", "GRAPH_LIMITS", "InvalidEvent", "Mapped", "ProviderLimits",
    "cancelled_occurrences", "canonical_to_crm", "canonical_to_google", "canonical_to_graph", "changed_crm_fields", "crm_occurrence",
    "crm_to_canonical", "fit_google", "fit_graph", "google_original_start", "google_to_canonical",
    "graph_original_start", "graph_to_canonical",
]
