"""The model lifecycle after training: the promotion gate that moves the registry's
`champion` alias (`recsys-promote`)."""
