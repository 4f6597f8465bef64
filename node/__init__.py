"""L4, the node: rooms for the chain store (`chain`), peers (`p2p`), mining (`mining`), the swarm
service (`swarm`), HTTP APIs (`api`), the command line (`cli`) and clients (`client`).

`node.builder` wires a `node.node.Node` and its services from a `node.config.NodeConfig`."""
