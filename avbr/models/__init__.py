"""avbr/models"""
