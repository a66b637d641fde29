"""facefix's built-in plugins (installed as ``facefix_plugins``).

Each subpackage is a plugin module named in the ``facefix`` entry-point group and
registers its components only through the hooks in :mod:`facefix.hookspecs`.
"""
