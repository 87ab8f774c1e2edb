"""brushwork for Krita 5 and 6: fast neural style transfer and super-resolution through a local daemon.

Krita imports this package at start-up. Outside Krita (tests, the installer) it registers
nothing, so its pure-Python modules (``pixels``, ``settings``) can be imported anywhere.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_VENDOR = os.path.join(_HERE, "vendor")   # a pyzmq wheel the installer unpacked for Krita's Python
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

try:
    from krita import Krita
except ImportError:
    Krita = None


def _register(app):
    from . import krita_host, settings
    try:
        import zmq  # noqa: F401  (pyzmq: Krita's own Python's, or the installer's vendor/ copy)
    except ImportError as exc:
        krita_host.register_notice(app, f"brushwork needs pyzmq in Krita's Python {sys.version_info[0]}."
                                        f"{sys.version_info[1]} ({exc}). Install it (Debian/Ubuntu: "
                                        "apt install python3-zmq) or run `brushwork install-plugin krita`, "
                                        "which vendors it, then restart Krita.")
        return None
    from .controller import Controller
    controller = Controller(krita_host, settings.default_path(), os.path.join(_HERE, "install.json"))
    krita_host.register(app, controller)
    return controller


if Krita is not None:
    controller = _register(Krita.instance())
