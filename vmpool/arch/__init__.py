"""Plain-torch architectures of the model zoo, one module per family (see ``vmpool.zoo``).

Layer layouts and state-dict keys match torchvision exactly, so a user's torchvision
``state_dict`` loads.
"""
