"""Ports for clusters of processes on this machine (multi-worker tests)."""
import socket


def free_ports(n):
    """`n` distinct ports that were free a moment ago (bound, read, released together)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
