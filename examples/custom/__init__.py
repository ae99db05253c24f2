"""A user's own model and data for p2pfl, outside the p2pfl package (see ../custom_model.py).

``custom.model:build`` is a model factory and ``custom.data:load`` a data loader; p2pfl
imports them by these paths, in every node process too.
"""
