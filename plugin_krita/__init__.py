"""The Krita 5 plug-in: ``brushwork/`` is what Krita loads, ``installer.py`` puts it in place."""
