"""brushwork backend: networks, model store, engine, ZeroMQ daemon and client.

Importing this package is cheap and torch-free; the plug-ins only ever import
``backend.client`` and ``backend.protocol``.
"""

__version__ = "0.1.0"
