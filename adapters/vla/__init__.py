"""adapters/vla"""
