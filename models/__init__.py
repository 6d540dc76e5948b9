"""Network definitions for 48x48 one-channel faces, behind a name -> builder registry."""

from fer_emotion.models import cnn, torchvision_nets  # noqa: F401  (registers the architectures)
from fer_emotion.models.registry import create_model, list_models, register

__all__ = ["create_model", "list_models", "register"]
