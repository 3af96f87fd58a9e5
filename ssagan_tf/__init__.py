"""ssagan_tf: SSA-CycleGAN (Xu, Qi, Xu, IEEE BIBM 2019) in TensorFlow/Keras, for data augmentation
on brain MRI.

Importing the package changes nothing outside it: the command lines quiet TensorFlow's start-up
(`ssagan_tf.console.install`, run by `ssagan_tf.cli.run`); a notebook that wants the same calls
`ssagan_tf.console.install()` before it imports TensorFlow."""

__version__ = "0.1.0"
