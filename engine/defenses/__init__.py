"""Defences against the server-side backdoors: one file per detector, as engine/attacks/
holds one file per attack. None is implemented yet."""
