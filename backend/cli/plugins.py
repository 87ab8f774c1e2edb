"""``brushwork install-plugin`` and ``package-plugin``: the Krita and GIMP plug-ins' installers."""

import shlex

from backend import protocol
from backend.protocol import BrushworkError


def register(sub):
    """Add the ``install-plugin`` and ``package-plugin`` commands to the subcommands ``sub``."""
    p = sub.add_parser("install-plugin", help="install (or remove) the Krita or GIMP plug-in",
                       description="Install the editor plug-in into the user's editor profile.")
    p.add_argument("editor", choices=("krita", "gimp"))
    p.add_argument("--uninstall", action="store_true", help="remove the plug-in instead")
    p.add_argument("--home", metavar="DIR", help="home directory to install under (default: yours)")
    p.add_argument("--python", metavar="CMD",
                   help="GIMP only: command that runs GIMP's Python, to check it can import pyzmq "
                        "(default: python3; e.g. 'chroot /srv/trixie python3')")
    p.add_argument("--krita-root", metavar="DIR",
                   help="Krita only: the system root Krita is installed in, e.g. a chroot (default: /); "
                        "its Python is checked for pyzmq there")
    p.set_defaults(func=cmd_install_plugin)

    p = sub.add_parser("package-plugin", help="build the Krita plug-in ZIP for Krita's importer",
                       description="Build a ZIP for Tools > Scripts > Import Python Plugin from File.")
    p.add_argument("editor", choices=("krita",))
    p.add_argument("-o", "--output", metavar="ZIP", help="output file (default: in the current directory)")
    p.set_defaults(func=cmd_package_plugin)


def _installer(editor):
    """The ``editor``'s installer module; an error when that plug-in is not part of this installation."""
    try:
        if editor == "krita":
            from plugin_krita import installer
        else:
            from plugin_gimp import installer
    except ImportError as exc:
        raise BrushworkError(f"the {editor} plug-in is not part of this installation ({exc})") from None
    return installer


def cmd_install_plugin(args):
    """Install (or remove) an editor's plug-in."""
    installer = _installer(args.editor)
    try:
        options = {"python": shlex.split(args.python)} if args.python else {}
        if options and args.editor != "gimp":
            raise protocol.BadRequest("--python applies to GIMP only (the Krita installer finds Krita's Python "
                                      "itself)")
        if args.krita_root:
            if args.editor != "krita":
                raise protocol.BadRequest("--krita-root applies to Krita only")
            options["krita_root"] = args.krita_root
        print(installer.install(uninstall=args.uninstall, home=args.home, **options))
    except (RuntimeError, OSError) as exc:  # the installers explain what to do in the message
        raise BrushworkError(str(exc)) from None
    return 0


def cmd_package_plugin(args):
    """Build the Krita plug-in ZIP."""
    installer = _installer(args.editor)
    try:
        print(installer.package(args.output))
    except (RuntimeError, OSError) as exc:
        raise BrushworkError(str(exc)) from None
    return 0
