"""The paper's toy model on its supervised-attention task, as a training family."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.config import Instance, ToyConfig
from toymodels.dynamics import make_recorder
from toymodels.models.toy import ToyModel
from toymodels.tasks.toy import (attention_loss, importance_weights, reconstruction_loss,
                                 sample_batch, template_matrix)

CURVES = ("recon", "attn")


def build(cfg: ToyConfig, rngs: nnx.Rngs) -> ToyModel:
    return ToyModel(cfg.N, cfg.D, cfg.H, init_scale=cfg.init_scale, rngs=rngs)


def host_init(cfg: ToyConfig, instances) -> dict:
    return {}


def frozen(cfg: ToyConfig) -> tuple[str, ...]:
    return (() if cfg.train_features else ("W",)) + (() if cfg.train_head else ("W_Q", "W_K"))


def hparams(cfg: ToyConfig, instances: list[Instance]) -> dict:
    def vector(p):
        return p if isinstance(p, tuple) else (float(p),) * cfg.N
    return {
        "lam": jnp.asarray([inst.lam for inst in instances], jnp.float32),
        "learning_rate": jnp.asarray([inst.learning_rate for inst in instances], jnp.float32),
        "p_active": jnp.asarray([vector(inst.p_active) for inst in instances], jnp.float32),
        "target_scale": jnp.asarray([inst.target_scale for inst in instances], jnp.float32),
    }


def program_key(cfg: ToyConfig) -> ToyConfig:
    defaults = ToyConfig()
    return cfg.replace(steps=cfg.chunk_steps, p_active=defaults.p_active,
                       record_points=min(cfg.record_points, 1), record_spacing="log",
                       **{name: getattr(defaults, name) for name in
                          ("lam", "learning_rate", "target_scale")})


def loss_fn(cfg: ToyConfig):
    T = jnp.asarray(template_matrix(cfg.template, cfg.N))
    importance = jnp.asarray(importance_weights(cfg))

    def loss(model, key, hp):
        f_q, f_k = sample_batch(key, hp["p_active"], cfg.batch_size, cfg.m, cfg.tokens)
        recon = reconstruction_loss(model, f_q, f_k, importance)
        attn = attention_loss(model, f_q, f_k, T, hp["target_scale"], cfg.attn_loss)
        return recon + hp["lam"] * attn, {"recon": recon, "attn": attn}

    return loss


def recorder(cfg: ToyConfig):
    record = make_recorder(cfg)
    return lambda model, hp: record(model.W[...], model.W_Q[...], model.W_K[...])


def divergence_loss(curves: dict, inst) -> np.ndarray:
    """The training loss of one instance, for the divergence rule."""
    return curves["recon"] + inst.lam * curves["attn"]

