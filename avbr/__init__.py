"""avbr"""
