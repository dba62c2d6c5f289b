"""What the one training loop needs to know about a model and its task, per family.

A family ties a config class to its model (models/), its task (tasks/) and its
in-training metrics. train.py asks it for:

  build(cfg, rngs) -> nnx.Module        the model of one instance
  host_init(cfg, instances) -> dict     starting values computed on the host ([I, ...])
  frozen(cfg) -> names                  parameters that never update
  hparams(cfg, instances) -> dict       batched hyperparameters, each [I, ...]
  program_key(cfg) -> cfg               configs with equal keys share one compiled program
  loss_fn(cfg) -> f(model, key, hp)     -> (loss, {curve name: scalar})
  recorder(cfg) -> f(model, hp) | None  metrics at record points

  toy.py          the paper's toy model on its supervised-attention task
  transformer.py  toy transformers on the retrieval tasks
"""


def diverged_steps(cfg, curves: dict, instances) -> list:
    """Each instance's first diverged step (divergence.diverged_step) of the training loss
    its family defines (toy: recon + λ·attn; transformer: the task loss); None if never."""
    from toymodels.divergence import diverged_step
    family = family_of(cfg)
    return [diverged_step(family.divergence_loss({k: v[n] for k, v in curves.items()}, inst))
            for n, inst in enumerate(instances)]


def family_of(cfg):
    """The family module for a config object."""
    if getattr(cfg, "family", "toy") == "transformer":
        from toymodels.families import transformer
        return transformer
    from toymodels.families import toy
    return toy
