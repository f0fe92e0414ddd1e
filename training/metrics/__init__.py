"""Video and image generation metrics with the paper's protocol (docs/reference.md, 'Metrics').

FVD_16 / FVD_128 / FVD_128 at stride 8 with a PyTorch Kinetics-400 I3D, FID with the 2015-12-05
Inception-v3; Frechet distance in float64. Detector weights come through resolvers (weights.py).
Needs only torch, numpy, scipy and safetensors.
"""

from .detectors import ImageDetector, VideoDetector, load_i3d, load_inception
from .evaluate import compute_metrics
from .frechet import FeatureStats, MetricsError, frechet_distance
from .i3d import I3DConfig, InceptionI3d
from .inception import InceptionV3
from .protocol import METRICS, MetricSpec, fake_times, get_spec, select_real_clips
from .weights import WeightsFormatError, WeightsNotFoundError, cache_dir, resolve_i3d, resolve_inception

__all__ = [
    "METRICS", "FeatureStats", "I3DConfig", "ImageDetector", "InceptionI3d", "InceptionV3", "MetricSpec",
    "MetricsError", "VideoDetector", "WeightsFormatError", "WeightsNotFoundError", "cache_dir",
    "compute_metrics", "fake_times", "frechet_distance", "get_spec", "load_i3d", "load_inception",
    "resolve_i3d", "resolve_inception", "select_real_clips",
]
