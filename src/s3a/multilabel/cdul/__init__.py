"""CDUL (ICCV'23), spec 5-6: the pseudo-label initialisation from global and local views
(:mod:`.pseudolabels`), the latent-label updates of gradient-alignment training (:mod:`.align`) and
the ``linear`` learner on cached embeddings (:mod:`.linear`). The image learners that fine-tune the
CLIP tower with the same label updates are :mod:`s3a.multilabel.imagetrain`.
"""
