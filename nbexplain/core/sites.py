"""Moved to ``nbexplain.circuits.sites``; these names stay importable from here."""

from ..circuits.sites import (
    LinearInputSite,
    MultiheadAttentionSite,
    OutputSite,
    Site,
    block_sites,
    has_attention,
    mha_heads,
)

__all__ = ["LinearInputSite", "MultiheadAttentionSite", "OutputSite", "Site", "block_sites", "has_attention",
           "mha_heads"]
