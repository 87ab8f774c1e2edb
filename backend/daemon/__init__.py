"""The daemon (`brushwork serve`). Its modules, in the order a request meets them:

``endpoints`` (where it listens, the IPC socket file), ``auth`` and ``connections`` (who may
connect), ``server`` (the loop: receives, routes, answers ``ping``/``info``/``echo``/``cancel``),
``request_checks`` (what a request must satisfy), ``fair_queue`` (jobs waiting, round-robin across
clients), ``worker`` (the one compute thread), ``jobs`` (decode → engine → encode: the one job
function, which the CLI's in-process path runs too), ``info_reply``; ``training`` runs
``train_style`` requests beside the queue.

This is the application layer: it may import the library (the rest of ``backend``) and the trainer;
nothing in the library or the trainer imports it.
"""
