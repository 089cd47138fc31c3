"""envs/experts"""
