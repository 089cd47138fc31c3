"""avbr/data"""
