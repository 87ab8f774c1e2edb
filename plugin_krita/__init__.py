"""The Krita 5 and 6 plug-in: ``brushwork/`` is what Krita loads, ``installer.py`` puts it in place."""
