"""LSTMVis project folders (Strobelt et al., lstm.seas.harvard.edu) ⇄ lstmviz runs. See docs/LSTMVIS.md.

    import_lstmvis("lstmvis_project/", "runs/imported")   # lstmviz.interop.lstmvis_import
    export_lstmvis("runs/mine", "lstmvis_project/")       # lstmviz.interop.lstmvis_export

The folder format and the tables both directions share are in :mod:`lstmviz.interop.lstmvis_format`.
"""

from __future__ import annotations

from .lstmvis_export import export_lstmvis
from .lstmvis_format import dict_token, read_dict, write_dict
from .lstmvis_import import import_lstmvis

__all__ = ["dict_token", "export_lstmvis", "import_lstmvis", "read_dict", "write_dict"]
