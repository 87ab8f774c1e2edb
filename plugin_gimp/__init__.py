"""brushwork's GIMP 3 plug-in.

The plug-in itself lives in ``plugin_gimp/brushwork/`` and runs inside GIMP's own Python;
:mod:`plugin_gimp.installer` copies it (with the vendored daemon client) into GIMP's
plug-ins folder.
"""
