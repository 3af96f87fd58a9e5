"""The judge: an independent ResNet18 tumor/normal classifier, trained once per dataset on the real
training slices only, that grades translations. Training's validation (`run_train.py
--judge`), augmentation (`run_augment.py --judge`) and evaluation (`run_evaluate.py --judge`)
use it; it uses none of them, and the evaluation's own classifiers are built from its parts.

    config.py      JudgeConfig, the judge's folder (judge.keras + judge.json): read_judge_info,
                   check_judge_for; plain Python, so flags are checked before TensorFlow loads
    train.py       train_judge: train it and write its folder
    scoring.py     Judge (a trained judge, loaded) and measure (translate, then score: tumor or
                   normal rate and KID against real slices, per direction)
    resnet.py      the ResNet18
    classifier.py  training a ResNet18 classifier with early stopping (the judge's and the evaluation's)
    datasets.py    the classifiers' input pipelines: classic augmentation, MixUp/CutMix, class weights

The command line is `python -m ssagan_tf.judge` (`ssagan judge`, ssagan_tf/commands/judge.py).
Importing this package does not import TensorFlow.
"""
