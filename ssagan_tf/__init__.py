"""ssagan_tf: SSA-CycleGAN (Xu, Qi, Xu, IEEE BIBM 2019) in TensorFlow/Keras, for data augmentation
on brain MRI."""

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) buries our own progress lines; users
# can still ask for it by setting the variable themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
