"""Data files shipped with varref (read through :mod:`importlib.resources`).

``ramachandran_potential.npz``: Ramachandran restraint potential derived from the MolProbity
Top8000 grids (CC-BY-4.0, see ``TOP8000_LICENSE.md``; built by
``tools/make_ramachandran_potential.py``; read by :mod:`varref.restraints.ramachandran`).
"""
