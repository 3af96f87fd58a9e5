"""ssagan_tf: SSA-CycleGAN (Xu, Qi, Xu, IEEE BIBM 2019) in TensorFlow/Keras, for data augmentation
on brain MRI."""

from ssagan_tf import console as _console

# TensorFlow's start-up chatter (oneDNN, CUDA probing, absl INFO lines) buries our own progress
# lines; its errors stay visible, and users who set TF_CPP_MIN_LOG_LEVEL themselves see it all.
_console.install()

__version__ = "0.1.0"
