"""Models whose heads the analysis reads, each exporting W_Q, W_K [.., H, D].

  toy.py          the paper's toy: a superposition autoencoder with one bilinear head
  transformer.py  a small transformer; heads stored as W_Q, W_K, W_V [L, n, H, D], W_O [L, n, D, H]
"""
