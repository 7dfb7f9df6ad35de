"""What crosses a socket or a file: the event stream and its publisher, recordings of it, the
site's node <-> hub protocol, and the CURVE keys and allow-lists that guard every hop."""
