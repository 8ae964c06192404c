"""Dataset audits: explain every image, group images decided by the same evidence, test each group.

>>> from nbexplain import audit
>>> a = audit(model, images, out="runs/val")     # doctest: +SKIP
>>> a.groups[0], a.table, a.gallery()            # doctest: +SKIP
"""

from ..errors import ManifestMismatch
from .pipeline import Audit, audit
from .suspicion import Group

__all__ = ["Audit", "Group", "ManifestMismatch", "audit"]
