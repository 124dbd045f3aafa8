"""The image learners (spec 6-7): ``finetune`` (CDUL's linear head on the CLIP tower) and
``mldecoder`` with a fine-tuned tower (the CLIP-Decoder head on its patch tokens), trained by one
loop with CDUL's latent-label updates. They compose CDUL and the decoder, so they sit above both:
:mod:`.network` (the tower + head, loss, ``model.pt``, prediction), :mod:`.loop` (one process or
DDP, resume) and ``python -m s3a.multilabel.imagetrain`` (:mod:`.__main__`).
"""
