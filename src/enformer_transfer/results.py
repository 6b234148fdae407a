"""``Run``: a run directory (``run.RunDirectory``: its records, stores and configs, stage by
stage) with the models it holds, as torch modules: its trained heads and its backbone, each
checked against what the run recorded before use. The library packages above heads read runs
through it; what is below them reads a ``RunDirectory``."""

from __future__ import annotations

from .errors import InputError, did_you_mean
from .rundir.layout import finished
from .rundir.provenance import verify_fingerprint
from .rundir.run import RunDirectory


class Run(RunDirectory):
    """A run directory: ``Run(path).tracks``, ``.windows(split)``, ``.targets(split)``, ``.head(name)``, ..."""

    def backbone(self, device: str = "cpu"):
        """The backbone that made the embeddings, its weights checked against their fingerprints."""
        from .backbone.load import load_backbone

        fix = f"re-embed ('enformer-transfer embed {self.path} --force')"
        for recorded in self.embeddings_record.key["backbone"].get("files", []):
            verify_fingerprint(recorded, "a backbone weights file", fix)
        e = self.embed_config
        return load_backbone(e.backbone, self.geometry, e.tf_gamma, e.allow_download, device, e.backbone_kind)

    def head(self, name: str):
        """A trained head (torch module + metadata, ``.predict(embeddings)``), checked against this run."""
        from .heads.checkpoint import load_head

        folder = self.layout.head(name)
        if not finished(folder.path):
            heads = self.heads()
            upstream = None if heads else self._missing_upstream(f"heads/{name}")
            if upstream:
                raise InputError(upstream)
            close = did_you_mean(name, heads)  # a slip of the name: that is the one piece of advice
            fix = "" if close else f"; run 'enformer-transfer train {self.path} --head {name}'"
            raise InputError(f"{self.path} has no trained head {name!r}{close} "
                             f"(has: {', '.join(heads) or 'none'}){fix}")
        head = load_head(folder)
        head.check_compatible(self)
        return head
