"""Peer-to-peer networking: wire protocol, peers, the peer manager, sync, misbehaviour policy."""
