"""The explorer and chat pages every node serves at ``/`` (`node.api.explorer.pages`)."""
