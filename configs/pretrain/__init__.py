"""Hydra configs of ``python -m avbr.train`` (a package so that ``pkg://avbr.configs.pretrain`` resolves)."""
