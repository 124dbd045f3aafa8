"""The CLIP-Decoder (spec 7): the ML-Decoder head with CLIP text queries (:mod:`.head`), its patch
tokens (:mod:`.tokens`), training and prediction on those tokens (:mod:`.train`) and the
ground-truth supervision with the ZSL/GZSL protocol (:mod:`.zsl`).
"""
