"""The daemon (`brushwork serve`): sockets, authentication, the fair queue, request checks and jobs.

This is the application layer: it may import the library (the rest of ``backend``) and the trainer;
nothing in the library or the trainer imports it.
"""
