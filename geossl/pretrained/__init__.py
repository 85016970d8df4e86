"""Where an encoder's weights come from, and what they expect.

geossl's own pretraining checkpoints (``checkpoint``), others' named foundation weights
(``foundation``) and the per-sensor normalisation an encoder was trained with
(``normalize``).
"""
