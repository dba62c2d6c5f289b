"""toymodels in and out of the tools researchers already use: TransformerLens and SAELens.

  layouts.py           which axis of W_Q.. is the residual one: 'toymodels' or
                       'transformer_lens'; never guessed where D = H fits both
  transformer_lens.py  TransformerLens state dicts (safetensors or .npz) read without
                       PyTorch; a toy transformer's parameters as such a state dict
                       and its HookedTransformerConfig fields
  saelens.py           an SAELens SAE (cfg.json + sae_weights.safetensors) as a feature
                       dictionary: W_dec's rows, normalised as SAELens folds them
  export.py            `toymodels export RUN --to transformer-lens`: one state dict and
                       config per instance

Shapes (notation of docs/science.md; TransformerLens' names in brackets):
  L layers [n_layers], n heads per layer [n_heads], D residual width [d_model],
  H head dim [d_head], N features [d_vocab of an export; d_sae of an SAE], T tokens [n_ctx],
  F MLP width [d_mlp]
  toymodels:        W_Q, W_K, W_V [.., H, D];  W_O [.., D, H];  features W [D, N]
  TransformerLens:  blocks.{l}.attn.W_Q, W_K, W_V [n, D, H];  W_O [n, H, D];
                    b_Q, b_K, b_V [n, H];  b_O [D];  embed.W_E [N, D];  unembed.W_U [D, N]
  SAELens:          W_dec [d_sae, d_model] = Wᵀ (one feature per row)

Nothing here imports PyTorch: tensors go through `safetensors.numpy`.
"""
