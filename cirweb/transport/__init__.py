"""Between the web process and the outside: the wire protocol, visitors and their limits, body limits,
the channel layer, the sockets' database thread, and enqueueing work for the workers."""
