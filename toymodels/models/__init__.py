"""Models whose heads the analysis reads, each exporting W_Q, W_K [.., H, D].

  toy.py  the paper's toy: a superposition autoencoder with one bilinear head
"""
