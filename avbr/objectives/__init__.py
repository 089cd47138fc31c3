"""avbr/objectives"""
