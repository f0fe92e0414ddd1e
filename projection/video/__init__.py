"""Real clips into the model: read a clip with its frame times (`clip`), invert its content and motion and
optionally tune the generator on its frames (`invert`); `python -m projection.video` is the CLI."""

from projection.video.clip import Clip, ClipError, read_clip
from projection.video.invert import VideoInversion, VideoOptions, VideoStep, invert_clip, save_inversion

__all__ = ["Clip", "ClipError", "VideoInversion", "VideoOptions", "VideoStep", "invert_clip", "read_clip",
           "save_inversion"]
